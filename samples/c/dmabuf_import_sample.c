// SPDX-License-Identifier: GPL-2.0
/*
 * dma-buf import sample: an importer of dma_buf_get_memory().
 *
 * Userspace hands /dev/dmabuf_import_sample a dma-buf fd with the
 * DMABUF_IMPORT_SAMPLE_DESCRIBE ioctl. The sample attaches to the dma-buf,
 * gets its physical memory, logs every chunk and range, returns a summary,
 * and lets go of everything before the ioctl returns. A real importer
 * (iommufd, KVM) would map the ranges into its own page tables instead of
 * logging them, and keep them until it is invalidated.
 *
 * For comparison, DMABUF_IMPORT_SAMPLE_MAP imports the same dma-buf the way
 * most importers do, as a DMA-mapped sg_table for a device: the sample's
 * own platform device, which has a DMA mask.
 *
 * See Documentation/driver-api/dma-buf-memory.rst.
 */

#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/capability.h>
#include <linux/dma-buf.h>
#include <linux/dma-buf-memory.h>
#include <linux/dma-resv.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/platform_device.h>
#include <linux/scatterlist.h>
#include <linux/uaccess.h>

#include "dmabuf_import_sample.h"

/* Ranges logged per chunk; a chunk may have up to 64K of them. */
#define SAMPLE_LOG_RANGES	8

static struct miscdevice sample_misc;
/* The device DMABUF_IMPORT_SAMPLE_MAP maps for. */
static struct platform_device *sample_pdev;

/*
 * The exporter calls this, with the reservation lock held, when the memory
 * we got may be about to move or be revoked. A real importer must stop
 * using the addresses: remove them from its page tables, flush its TLBs,
 * make sure no DMA to them is in flight (or fence it), and then call
 * dma_buf_put_memory(); for a dynamic exporter it gets the new ranges with
 * dma_buf_get_memory() the next time it needs them.
 *
 * This sample never holds memory outside of its ioctl, and the ioctl holds
 * the reservation lock for as long as it has memory, so an invalidate
 * cannot find anything to drop: it is only logged.
 */
static void sample_invalidate_mappings(struct dma_buf_attachment *attach)
{
	pr_info("%s: invalidated, nothing to unmap\n", attach->dmabuf->exp_name);
}

/*
 * What the sample can handle: memory of any model (it never keeps the
 * ranges), and PCI MMIO of other devices (peer-to-peer). It does not set
 * allow_private: it has no use for memory the CPU cannot access, and
 * exporters of such memory refuse the attachment with -EOPNOTSUPP.
 */
static const struct dma_buf_attach_ops sample_attach_ops = {
	.allow_peer2peer = true,
	.memory_models = DMA_BUF_ACCEPT_PINNED | DMA_BUF_ACCEPT_REVOCABLE |
			 DMA_BUF_ACCEPT_DYNAMIC,
	.invalidate_mappings = sample_invalidate_mappings,
};

static const char *sample_kind_name(u32 kind)
{
	switch (kind) {
	case DMA_BUF_CHUNK_CPU:
		return "cpu memory";
	case DMA_BUF_CHUNK_P2P_MMIO:
		return "p2p mmio";
	default:
		return "unknown";
	}
}

/* Log the description and copy the summary out; called under the lock. */
static void sample_describe_memory(const struct dma_buf_memory *mem,
				   struct dmabuf_import_sample_describe *desc)
{
	unsigned int i, j, n = 0;

	desc->nr_chunks = mem->nr_chunks;
	desc->size = mem->size;

	for (i = 0; i < mem->nr_chunks; i++) {
		const struct dma_buf_chunk *chunk = &mem->chunks[i];

		/* A provider is the PCI device whose BAR holds the chunk. */
		if (chunk->provider)
			pr_info("chunk %u: %s, provider %p, flags %#x, %u ranges\n",
				i, sample_kind_name(chunk->kind),
				chunk->provider, chunk->flags, chunk->nr_ranges);
		else
			pr_info("chunk %u: %s, provider cpu, flags %#x, %u ranges\n",
				i, sample_kind_name(chunk->kind),
				chunk->flags, chunk->nr_ranges);

		for (j = 0; j < chunk->nr_ranges; j++, n++) {
			const struct phys_vec *range = &chunk->ranges[j];

			if (j < SAMPLE_LOG_RANGES)
				pr_info("  range %u: %pa + %#zx\n",
					j, &range->paddr, range->len);
			if (n < ARRAY_SIZE(desc->ranges)) {
				desc->ranges[n].paddr = range->paddr;
				desc->ranges[n].len = range->len;
			}
		}
		if (chunk->nr_ranges > SAMPLE_LOG_RANGES)
			pr_info("  ... %u more ranges\n",
				chunk->nr_ranges - SAMPLE_LOG_RANGES);
	}
	desc->nr_ranges = n;
}

static int sample_describe(struct dmabuf_import_sample_describe *desc)
{
	struct dma_buf_attachment *attach;
	struct dma_buf_memory *mem;
	struct dma_buf *dmabuf;
	int ret;

	dmabuf = dma_buf_get(desc->fd);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);

	/*
	 * Attach with a real device: ours. The core refuses, with
	 * -EOPNOTSUPP and before the exporter hears of us, a buffer whose
	 * memory model is not in sample_attach_ops.memory_models.
	 */
	attach = dma_buf_dynamic_attach(dmabuf, sample_misc.this_device,
					&sample_attach_ops, NULL);
	if (IS_ERR(attach)) {
		ret = PTR_ERR(attach);
		goto out_put;
	}
	desc->model = dma_buf_model(dmabuf);

	/* The memory is described, and stays valid, under the lock. */
	ret = dma_resv_lock_interruptible(dmabuf->resv, NULL);
	if (ret)
		goto out_detach;

	/*
	 * -EOPNOTSUPP: the exporter has no get_memory (DMA_BUF_MODEL_NONE).
	 * -ENODEV: the exporter revoked the buffer.
	 * -EINVAL: the exporter described invalid memory (and got a warning).
	 */
	ret = dma_buf_get_memory(attach, &mem);
	if (!ret) {
		pr_info("%s: %zu bytes in %u chunks, model %u\n",
			dmabuf->exp_name, mem->size, mem->nr_chunks,
			desc->model);
		sample_describe_memory(mem, desc);
		dma_buf_put_memory(attach, mem);
	}

	dma_resv_unlock(dmabuf->resv);
out_detach:
	dma_buf_detach(dmabuf, attach);
out_put:
	dma_buf_put(dmabuf);
	return ret;
}

/* Copy the table out; the CPU list is empty for PCI MMIO. */
static void sample_map_summary(struct sg_table *sgt,
			       struct dmabuf_import_sample_map *map)
{
	struct scatterlist *sg;
	unsigned int i;

	map->nents = sgt->orig_nents;
	for_each_sgtable_sg(sgt, sg, i) {
		if (i == ARRAY_SIZE(map->ranges))
			break;
		map->ranges[i].paddr = sg_phys(sg);
		map->ranges[i].len = sg->length;
	}
	map->dma_nents = sgt->nents;
	map->dma_addr = sg_dma_address(sgt->sgl);
	for_each_sgtable_dma_sg(sgt, sg, i)
		map->dma_len += sg_dma_len(sg);
}

/*
 * A dynamic importer that allows peer-to-peer but declares no memory model:
 * what an RDMA or GPU driver importing another device's MMIO looks like. It
 * keeps the table only inside the ioctl, and does no DMA with it, so an
 * invalidate finds nothing to stop.
 */
static void sample_map_invalidate(struct dma_buf_attachment *attach)
{
	pr_info("%s: mapping invalidated\n", attach->dmabuf->exp_name);
}

static const struct dma_buf_attach_ops sample_map_attach_ops = {
	.allow_peer2peer = true,
	.invalidate_mappings = sample_map_invalidate,
};

static int sample_map(struct dmabuf_import_sample_map *map)
{
	struct dma_buf_attachment *attach;
	struct pci_dev *pdev = NULL;
	struct dma_buf *dmabuf;
	struct sg_table *sgt;
	int ret = 0;

	if (map->flags & ~DMABUF_IMPORT_SAMPLE_MAP_PCI || map->reserved)
		return -EINVAL;
	if (map->flags & DMABUF_IMPORT_SAMPLE_MAP_PCI) {
		pdev = pci_get_domain_bus_and_slot(map->pci >> 16,
						   (map->pci >> 8) & 0xff,
						   map->pci & 0xff);
		if (!pdev)
			return -ENODEV;
	}

	dmabuf = dma_buf_get(map->fd);
	if (IS_ERR(dmabuf)) {
		ret = PTR_ERR(dmabuf);
		goto out_pci;
	}

	/*
	 * Without a PCI device, a static importer declaring no memory model:
	 * what every importer was before dma_buf_get_memory(). It keeps the
	 * table only inside this ioctl, so it needs no invalidate callback.
	 */
	if (pdev)
		attach = dma_buf_dynamic_attach(dmabuf, &pdev->dev,
						&sample_map_attach_ops, NULL);
	else
		attach = dma_buf_attach(dmabuf, &sample_pdev->dev);
	if (IS_ERR(attach)) {
		ret = PTR_ERR(attach);
		goto out_put;
	}

	sgt = dma_buf_map_attachment_unlocked(attach, DMA_BIDIRECTIONAL);
	if (IS_ERR(sgt)) {
		ret = PTR_ERR(sgt);
		goto out_detach;
	}
	sample_map_summary(sgt, map);
	pr_info("%s: sg_table of %u entries, %u DMA segments, %llu bytes\n",
		dmabuf->exp_name, map->nents, map->dma_nents, map->dma_len);
	dma_buf_unmap_attachment_unlocked(attach, sgt, DMA_BIDIRECTIONAL);

out_detach:
	dma_buf_detach(dmabuf, attach);
out_put:
	dma_buf_put(dmabuf);
out_pci:
	pci_dev_put(pdev);
	return ret;
}

static long sample_ioctl_describe(struct dmabuf_import_sample_describe __user *uarg)
{
	struct dmabuf_import_sample_describe desc = {};
	int ret;

	if (get_user(desc.fd, &uarg->fd))
		return -EFAULT;
	ret = sample_describe(&desc);
	if (ret)
		return ret;
	return copy_to_user(uarg, &desc, sizeof(desc)) ? -EFAULT : 0;
}

static long sample_ioctl_map(struct dmabuf_import_sample_map __user *uarg)
{
	struct dmabuf_import_sample_map map = {};
	int ret;

	if (get_user(map.fd, &uarg->fd) || get_user(map.flags, &uarg->flags) ||
	    get_user(map.pci, &uarg->pci) ||
	    get_user(map.reserved, &uarg->reserved))
		return -EFAULT;
	ret = sample_map(&map);
	if (ret)
		return ret;
	return copy_to_user(uarg, &map, sizeof(map)) ? -EFAULT : 0;
}

static long sample_ioctl(struct file *file, unsigned int cmd,
			 unsigned long arg)
{
	/* Physical addresses are for the administrator's eyes only. */
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;

	switch (cmd) {
	case DMABUF_IMPORT_SAMPLE_DESCRIBE:
		return sample_ioctl_describe((void __user *)arg);
	case DMABUF_IMPORT_SAMPLE_MAP:
		return sample_ioctl_map((void __user *)arg);
	default:
		return -ENOTTY;
	}
}

static const struct file_operations sample_fops = {
	.owner = THIS_MODULE,
	.unlocked_ioctl = sample_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
};

static struct miscdevice sample_misc = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = KBUILD_MODNAME,
	.fops = &sample_fops,
};

static int __init sample_init(void)
{
	int ret;

	/*
	 * A platform device comes with a 32-bit DMA mask and, outside any
	 * IOMMU group, the direct DMA mapping: enough for a device that is
	 * only mapped for and never does DMA.
	 */
	sample_pdev = platform_device_register_simple(KBUILD_MODNAME,
						      PLATFORM_DEVID_NONE,
						      NULL, 0);
	if (IS_ERR(sample_pdev))
		return PTR_ERR(sample_pdev);

	ret = misc_register(&sample_misc);
	if (ret)
		platform_device_unregister(sample_pdev);
	return ret;
}
module_init(sample_init);

static void __exit sample_exit(void)
{
	misc_deregister(&sample_misc);
	platform_device_unregister(sample_pdev);
}
module_exit(sample_exit);

MODULE_IMPORT_NS("DMA_BUF");
MODULE_DESCRIPTION("Sample importer of dma_buf_get_memory()");
MODULE_LICENSE("GPL");

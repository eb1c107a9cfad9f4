// SPDX-License-Identifier: GPL-2.0
/*
 * dma_buf_get_memory() vs dma_buf_map_attachment(): time and metadata.
 *
 * At insmod, for a buffer of 1 GiB made of 1 to 65536 physical ranges, and
 * for buffers of 4 KiB to 16 GiB made of 1 or 256, the module times
 * dma_buf_get_memory() + dma_buf_put_memory() and
 * dma_buf_map_attachment() + dma_buf_unmap_attachment(), the latter without
 * (sg) and, where the buffer is real memory, with (sg+dma) the DMA mapping,
 * on the same attachment of the same buffer, counts the bytes each
 * description holds,
 * and prints a table to the kernel log, every line starting "dmabuf-bench:".
 * The module stays loaded, doing nothing, until rmmod.
 *
 * The bench exporter describes its memory the way vfio-pci does: a buffer
 * is a list of ranges of one kind (and provider), and
 *
 * - it keeps its ranges in an array of &struct phys_vec, as vfio-pci does;
 * - get_memory returns them as one chunk, P2P MMIO or CPU (see Memory
 *   below), built with dma_buf_memory_alloc() and
 *   dma_buf_memory_add_ranges() of the array: on every call (the get_mem
 *   column), or once, sealed with dma_buf_memory_seal(), with every call
 *   returning dma_buf_memory_share() of that one description (the shared
 *   column), as vfio-pci does; the add1 column builds it per call with a
 *   dma_buf_memory_add_range() call per range instead;
 * - map_dma_buf returns them as an sg_table shaped like the one of
 *   dma_buf_phys_vec_to_sgt(), the kernel's helper for exporters of
 *   physical ranges (vfio-pci's map_dma_buf): one sg_alloc_table() entry
 *   per range, a range longer than the longest sg entry (4 GiB - 4 KiB)
 *   split over several, no CPU (page) list. Exporters holding an array of
 *   pages build the same table with sg_alloc_table_from_pages_segment(),
 *   which also walks every page, a cost growing with the buffer size that
 *   this bench does not measure.
 *
 * The sg column: map_dma_buf writes the physical addresses into
 * sg_dma_address() where a real exporter would DMA-map each range
 * (dma_map_phys() or an IOVA link) and unmap it again in unmap_dma_buf:
 * that time is a lower bound.
 *
 * The sg+dma column is what a real exporter of CPU memory costs: the same
 * attachment, with map_dma_buf building the sg_table from the pages of the
 * ranges and calling dma_map_sgtable() for attach->dev, unmap_dma_buf
 * dma_unmap_sgtable(). The importer attaches with pci-testdev, a PCI device
 * no driver binds in bench mode, behind the guest's emulated intel-iommu
 * (intel_iommu=on iommu.strict=1): its default DMA domain maps every page
 * of the buffer into the IOMMU page table and unmaps it with a synchronous
 * IOTLB invalidation, the per-page cost importers that build their own page
 * tables from dma_buf_get_memory() (iommufd, KVM) do not pay on each map.
 *
 * Memory: the guest (4 GiB) cannot hold the buffers, so every range whose
 * length fits one physically contiguous block of up to 4 MiB, allocated
 * once, is that block: all ranges of a buffer are the same physical memory,
 * described as CPU memory by get_memory and by both sg variants. Nothing
 * reads or writes it, and the device never does DMA. Buffers with longer
 * ranges (1 GiB in up to 64 ranges, 64 MiB in 1, 16 GiB) keep fake P2P MMIO
 * ranges spread, with a gap after each, over a window at 1 TiB where the
 * guest has nothing, and have no sg+dma column.
 *
 * Then, beside it, the IOMMU driver's own cost per physically discontiguous
 * run, the unit iommufd maps a dma-buf in: iommu_map() of 256 KiB of the
 * block into a paging domain of pci-testdev as one run and as 64 runs of a
 * page, each followed by one iommu_unmap() (bench_iommu()).
 *
 * Times are medians over batches of back-to-back calls with the
 * reservation lock held around each batch, as importers hold it around
 * these calls. Bytes are what the description holds while it exists, in
 * allocator units: slab bucket sizes, whole pages for full sg chunks.
 */

#define pr_fmt(fmt) "dmabuf-bench: " fmt

#include <linux/device/faux.h>
#include <linux/dma-buf.h>
#include <linux/dma-buf-memory.h>
#include <linux/dma-mapping.h>
#include <linux/dma-resv.h>
#include <linux/iommu.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/pci.h>
#include <linux/pci-p2pdma.h>
#include <linux/scatterlist.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/sort.h>

#define BENCH_PHYS_BASE		((phys_addr_t)SZ_1T)
/* The longest sg entry dma_buf_phys_vec_to_sgt() builds. */
#define BENCH_SG_MAX_SEG	ALIGN_DOWN(UINT_MAX, PAGE_SIZE)
#define BENCH_BATCHES		15
/* Batches of a call longer than BENCH_SLOW_NS (the largest sg+dma rows). */
#define BENCH_SLOW_BATCHES	5
#define BENCH_SLOW_NS		(5 * BENCH_BATCH_NS)
#define BENCH_BATCH_NS		(20 * NSEC_PER_MSEC)
#define BENCH_MAX_ITERS		SZ_64K
/* The real memory behind ranges of at most its size. */
#define BENCH_BLOCK_ORDER	min_t(int, get_order(SZ_4M), MAX_PAGE_ORDER)
/* pci-testdev, the device the importer DMA-maps for. */
#define BENCH_TESTDEV_ID	0x0005

/*
 * The rows: by range count at 1 GiB, from one range to the most one
 * description holds, then by size at 1 and at 256 ranges.
 */
static const struct {
	u64 size;
	unsigned int nr_ranges;
} bench_cases[] = {
	{ SZ_1G, 1 }, { SZ_1G, 4 }, { SZ_1G, 16 }, { SZ_1G, 64 },
	{ SZ_1G, 256 }, { SZ_1G, 1024 }, { SZ_1G, 4096 }, { SZ_1G, 16384 },
	{ SZ_1G, SZ_64K },
	{ SZ_4K, 1 }, { SZ_1M, 1 }, { SZ_64M, 1 }, { SZ_16G, 1 },
	{ SZ_1M, 256 }, { SZ_64M, 256 }, { SZ_16G, 256 },
};

/* The range counts whose rows span sizes: "flat in size". */
static const unsigned int bench_flat_ranges[] = { 1, 256 };

#define BENCH_MAX_ROWS	ARRAY_SIZE(bench_cases)

/* Only compared by the core, never dereferenced. */
static struct p2pdma_provider bench_provider;

struct bench_buf {
	u64 size;
	unsigned int nr_ranges;
	/* The memory of every range, NULL for fake MMIO ranges. */
	struct page *block;
	/* map_dma_buf DMA-maps (sg+dma) instead of writing the addresses. */
	bool dma;
	/* get_memory shares one description instead of building one. */
	bool share;
	/* get_memory adds one range per call instead of the array at once. */
	bool one_by_one;
	/* The ranges, as bench_range() computes them. */
	struct phys_vec *ranges;
	struct dma_buf_memory *shared;
};

struct bench_time {
	u64 median;
	u64 min;
	u64 max;
	unsigned int iters;
	unsigned int batches;
};

struct bench_row {
	u64 size;
	unsigned int nr_ranges;
	struct bench_time mem, add1, shared, sg, sgd;
	size_t mem_bytes, sg_bytes;
	unsigned int mem_allocs, sg_allocs, sg_nents;
	/* The ranges are the real block (CPU memory), not fake MMIO. */
	bool cpu;
	/* sgd and sgd_nents (DMA segments) are valid: sg+dma was measured. */
	bool has_sgd;
	unsigned int sgd_nents;
};

static struct bench_row bench_rows[BENCH_MAX_ROWS];

/* The DMA domain of the importer's device, to check an IOVA. */
static struct iommu_domain *bench_domain;

/*
 * Range @i of @buf: equal ranges, all the block if @buf has one, else fake
 * MMIO each followed by a gap as long as itself. Computed once, into
 * @buf->ranges, which both paths read.
 */
static struct phys_vec bench_range(const struct bench_buf *buf, unsigned int i)
{
	u64 len = div_u64(buf->size, buf->nr_ranges);

	return (struct phys_vec){
		.paddr = buf->block ? page_to_phys(buf->block) :
				      BENCH_PHYS_BASE + 2 * len * i,
		.len = len,
	};
}

/* The exporter. */

static struct dma_buf_memory *bench_describe(const struct bench_buf *buf)
{
	struct dma_buf_memory *m;
	unsigned int i;
	int ret;

	m = dma_buf_memory_alloc(1, buf->nr_ranges, GFP_KERNEL);
	if (!m)
		return NULL;
	if (buf->block)
		ret = dma_buf_memory_add_chunk(m, NULL, DMA_BUF_CHUNK_CPU, 0);
	else
		ret = dma_buf_memory_add_chunk(m, &bench_provider,
					       DMA_BUF_CHUNK_P2P_MMIO, 0);
	if (!ret && !buf->one_by_one)
		ret = dma_buf_memory_add_ranges(m, buf->ranges, buf->nr_ranges);
	for (i = 0; !ret && buf->one_by_one && i < buf->nr_ranges; i++)
		ret = dma_buf_memory_add_range(m, buf->ranges[i].paddr,
					       buf->ranges[i].len);
	if (ret) {
		dma_buf_memory_free(m);
		return NULL;
	}
	return m;
}

static int bench_get_memory(struct dma_buf_attachment *attach,
			    struct dma_buf_memory **mem)
{
	struct bench_buf *buf = attach->dmabuf->priv;

	if (!buf->share) {
		*mem = bench_describe(buf);
		return *mem ? 0 : -ENOMEM;
	}
	if (!buf->shared) {
		buf->shared = bench_describe(buf);
		if (!buf->shared)
			return -ENOMEM;
		if (dma_buf_memory_seal(buf->shared)) {
			dma_buf_memory_free(buf->shared);
			buf->shared = NULL;
			return -EINVAL;
		}
	}
	*mem = dma_buf_memory_share(buf->shared);
	return 0;
}

/*
 * sg+dma: a table of the pages of the ranges, one entry per range (no range
 * is longer than the block), DMA-mapped for the importer's device.
 */
static struct sg_table *bench_map_dma(struct dma_buf_attachment *attach,
				      enum dma_data_direction dir)
{
	const struct bench_buf *buf = attach->dmabuf->priv;
	struct scatterlist *sg;
	struct sg_table *sgt;
	unsigned int i;
	int ret;

	sgt = kzalloc_obj(*sgt);
	if (!sgt)
		return ERR_PTR(-ENOMEM);
	ret = sg_alloc_table(sgt, buf->nr_ranges, GFP_KERNEL);
	if (ret)
		goto err_free;
	for_each_sgtable_sg(sgt, sg, i)
		sg_set_page(sg, buf->block, (unsigned int)buf->ranges[i].len, 0);
	ret = dma_map_sgtable(attach->dev, sgt, dir, 0);
	if (ret)
		goto err_table;
	return sgt;

err_table:
	sg_free_table(sgt);
err_free:
	kfree(sgt);
	return ERR_PTR(ret);
}

/* dma_buf_phys_vec_to_sgt() without the DMA mapping: see the top comment. */
static struct sg_table *bench_map(struct dma_buf_attachment *attach,
				  enum dma_data_direction dir)
{
	const struct bench_buf *buf = attach->dmabuf->priv;
	struct scatterlist *sg;
	struct sg_table *sgt;
	unsigned int i, nents = 0;
	int ret;

	if (buf->dma)
		return bench_map_dma(attach, dir);

	for (i = 0; i < buf->nr_ranges; i++)
		nents += DIV_ROUND_UP_ULL(buf->ranges[i].len, BENCH_SG_MAX_SEG);

	sgt = kzalloc_obj(*sgt);
	if (!sgt)
		return ERR_PTR(-ENOMEM);
	ret = sg_alloc_table(sgt, nents, GFP_KERNEL);
	if (ret) {
		kfree(sgt);
		return ERR_PTR(ret);
	}

	sg = sgt->sgl;
	for (i = 0; i < buf->nr_ranges; i++) {
		struct phys_vec range = buf->ranges[i];

		while (range.len) {
			size_t len = min_t(size_t, range.len, BENCH_SG_MAX_SEG);

			sg_set_page(sg, NULL, 0, 0);
			/* A real exporter DMA-maps here. */
			sg_dma_address(sg) = range.paddr;
			sg_dma_len(sg) = len;
			range.paddr += len;
			range.len -= len;
			sg = sg_next(sg);
		}
	}
	return sgt;
}

static void bench_unmap(struct dma_buf_attachment *attach,
			struct sg_table *sgt, enum dma_data_direction dir)
{
	const struct bench_buf *buf = attach->dmabuf->priv;

	if (buf->dma)
		dma_unmap_sgtable(attach->dev, sgt, dir, 0);
	sg_free_table(sgt);
	kfree(sgt);
}

static void bench_release(struct dma_buf *dmabuf)
{
}

static const struct dma_buf_ops bench_ops = {
	.map_dma_buf = bench_map,
	.unmap_dma_buf = bench_unmap,
	.release = bench_release,
	.get_memory = bench_get_memory,
};

/* The importer. */

static void bench_invalidate(struct dma_buf_attachment *attach)
{
	/* The bench exporter is pinned: it never invalidates. */
	pr_err("unexpected invalidate\n");
}

static const struct dma_buf_attach_ops bench_attach_ops = {
	.allow_peer2peer = true,
	.memory_models = DMA_BUF_ACCEPT_PINNED | DMA_BUF_ACCEPT_REVOCABLE,
	.invalidate_mappings = bench_invalidate,
};

static int bench_get_put(struct dma_buf_attachment *attach)
{
	struct dma_buf_memory *mem;
	int ret;

	ret = dma_buf_get_memory(attach, &mem);
	if (ret)
		return ret;
	dma_buf_put_memory(attach, mem);
	return 0;
}

static int bench_map_unmap(struct dma_buf_attachment *attach)
{
	struct sg_table *sgt;

	sgt = dma_buf_map_attachment(attach, DMA_BIDIRECTIONAL);
	if (IS_ERR(sgt))
		return PTR_ERR(sgt);
	dma_buf_unmap_attachment(attach, sgt, DMA_BIDIRECTIONAL);
	return 0;
}

/* Measurement. */

/*
 * What one slab allocation and free cost on this kernel, the unit of work
 * both paths share: the allocs columns of the table count them.
 */
static int bench_kmalloc(struct dma_buf_attachment *attach)
{
	void *p = kmalloc(SZ_64, GFP_KERNEL);

	if (!p)
		return -ENOMEM;
	OPTIMIZER_HIDE_VAR(p);
	kfree(p);
	return 0;
}

/*
 * The parts of a shared get+put, each timed on its own (bench_breakdown()):
 * what the core and a sharing exporter do per call besides the two op calls.
 */
static DEFINE_XARRAY_ALLOC(bench_xa);
static refcount_t bench_ref = REFCOUNT_INIT(1);
static struct dma_buf_memory *bench_sealed;

static int bench_nop(struct dma_buf_attachment *attach)
{
	return 0;
}

/* The core tracks each description an importer holds in an xarray. */
static int bench_xa_pair(struct dma_buf_attachment *attach)
{
	u32 id;
	int ret;

	ret = xa_alloc(&bench_xa, &id, &bench_ref, xa_limit_32b, GFP_KERNEL);
	if (!ret)
		xa_erase(&bench_xa, id);
	return ret;
}

static int bench_refcount_pair(struct dma_buf_attachment *attach)
{
	refcount_inc(&bench_ref);
	refcount_dec(&bench_ref);
	return 0;
}

/* What a sharing exporter's get_memory and put_memory do. */
static int bench_share_pair(struct dma_buf_attachment *attach)
{
	dma_buf_memory_free(dma_buf_memory_share(bench_sealed));
	return 0;
}

/* Time @iters calls of @op, under the lock of @attach if there is one. */
static int bench_batch(struct dma_buf_attachment *attach,
		       int (*op)(struct dma_buf_attachment *attach),
		       unsigned int iters, u64 *ns)
{
	unsigned int i;
	int ret = 0;
	u64 start;

	if (attach)
		dma_resv_lock(attach->dmabuf->resv, NULL);
	start = ktime_get_ns();
	for (i = 0; i < iters && !ret; i++)
		ret = op(attach);
	*ns = ktime_get_ns() - start;
	if (attach)
		dma_resv_unlock(attach->dmabuf->resv);
	cond_resched();
	return ret;
}

static int bench_cmp_u64(const void *a, const void *b)
{
	u64 x = *(const u64 *)a, y = *(const u64 *)b;

	return x < y ? -1 : x > y;
}

/* Batches of at least BENCH_BATCH_NS; the median batch's time per call. */
static int bench_time(struct dma_buf_attachment *attach,
		      int (*op)(struct dma_buf_attachment *attach),
		      struct bench_time *t)
{
	unsigned int i, iters, batches = BENCH_BATCHES;
	u64 ns, per_call[BENCH_BATCHES];
	int ret;

	for (iters = 1; ; iters *= 2) {
		ret = bench_batch(attach, op, iters, &ns);
		if (ret)
			return ret;
		if (ns >= BENCH_BATCH_NS || iters >= BENCH_MAX_ITERS)
			break;
	}
	/* Fewer batches of single slow calls keep the bench short in TCG. */
	if (iters == 1 && ns >= BENCH_SLOW_NS)
		batches = BENCH_SLOW_BATCHES;
	for (i = 0; i < batches; i++) {
		ret = bench_batch(attach, op, iters, &ns);
		if (ret)
			return ret;
		per_call[i] = div_u64(ns, iters);
	}
	sort(per_call, batches, sizeof(u64), bench_cmp_u64, NULL);
	t->median = per_call[batches / 2];
	t->min = per_call[0];
	t->max = per_call[batches - 1];
	t->iters = iters;
	t->batches = batches;
	return 0;
}

/* What an allocation of @bytes at @p takes from its allocator. */
static size_t bench_alloc_bytes(const void *p, size_t bytes)
{
	return is_vmalloc_addr(p) ? PAGE_ALIGN(bytes) :
				    kmalloc_size_roundup(bytes);
}

/*
 * Bytes of a description from bench_describe(), which sizes it exactly:
 * the struct with its chunks and, in the same allocation or (when the
 * ranges fill a slab bucket) their own, the ranges. Reads the fields the
 * core keeps private to tell which.
 */
static size_t bench_memory_bytes(const struct dma_buf_memory *mem,
				 unsigned int *allocs)
{
	size_t head = struct_size(mem, chunks, mem->max_chunks);
	size_t pool = mem->max_ranges * sizeof(struct phys_vec);

	if (mem->pool == (const struct phys_vec *)&mem->chunks[mem->max_chunks]) {
		*allocs = 1;
		return bench_alloc_bytes(mem, head + pool);
	}
	*allocs = 2;
	return bench_alloc_bytes(mem, head) + bench_alloc_bytes(mem->pool, pool);
}

/*
 * Bytes of an sg_table from bench_map(): the table, and each scatterlist
 * allocation of sg_alloc_table(), which ends at the last entry or at a
 * chain entry; a full one (SG_MAX_SINGLE_ALLOC entries) is a page.
 */
static size_t bench_sgt_bytes(struct sg_table *sgt, unsigned int *allocs)
{
	size_t bytes = kmalloc_size_roundup(sizeof(*sgt));
	struct scatterlist *sg = sgt->sgl;
	unsigned int n;

	*allocs = 1;
	while (sg) {
		for (n = 1; !sg_is_last(&sg[n - 1]) && !sg_is_chain(&sg[n - 1]); n++)
			;
		bytes += n == SG_MAX_SINGLE_ALLOC ? PAGE_SIZE :
			 kmalloc_size_roundup(n * sizeof(*sg));
		(*allocs)++;
		sg = sg_is_chain(&sg[n - 1]) ? sg_chain_ptr(&sg[n - 1]) : NULL;
	}
	return bytes;
}

/* Do the sg entries, joined where a range was split, give the ranges? */
static bool bench_same_ranges(const struct dma_buf_memory *mem,
			      struct sg_table *sgt)
{
	const struct dma_buf_chunk *chunk = &mem->chunks[0];
	unsigned int c = 0, r = 0, i;
	struct scatterlist *sg;
	size_t off = 0;

	for_each_sgtable_dma_sg(sgt, sg, i) {
		if (c == mem->nr_chunks ||
		    sg_dma_address(sg) != chunk->ranges[r].paddr + off)
			return false;
		off += sg_dma_len(sg);
		if (off > chunk->ranges[r].len)
			return false;
		if (off < chunk->ranges[r].len)
			continue;
		off = 0;
		if (++r == chunk->nr_ranges) {
			r = 0;
			chunk = ++c < mem->nr_chunks ? &mem->chunks[c] : NULL;
		}
	}
	return c == mem->nr_chunks;
}

/*
 * sg+dma: do the CPU entries give the ranges, one each, do the DMA segments
 * add up to the buffer, and does the IOMMU translate the first DMA address
 * to the first range?
 */
static bool bench_same_pages(const struct dma_buf_memory *mem,
			     struct sg_table *sgt)
{
	const struct dma_buf_chunk *chunk = &mem->chunks[0];
	struct scatterlist *sg;
	size_t dma_len = 0;
	unsigned int i;

	if (mem->nr_chunks != 1 || sgt->orig_nents != chunk->nr_ranges ||
	    !sgt->nents)
		return false;
	for_each_sgtable_sg(sgt, sg, i) {
		if (sg_phys(sg) != chunk->ranges[i].paddr ||
		    sg->length != chunk->ranges[i].len)
			return false;
	}
	for_each_sgtable_dma_sg(sgt, sg, i)
		dma_len += sg_dma_len(sg);
	return dma_len == mem->size && (!bench_domain ||
	       iommu_iova_to_phys(bench_domain, sg_dma_address(sgt->sgl)) ==
	       chunk->ranges[0].paddr);
}

/* Measure the sizes of both descriptions of the buffer, and compare them. */
static int bench_bytes(struct dma_buf_attachment *attach, struct bench_row *row)
{
	struct dma_buf *dmabuf = attach->dmabuf;
	const struct bench_buf *buf = dmabuf->priv;
	struct dma_buf_memory *mem;
	struct sg_table *sgt;
	bool same;
	int ret;

	dma_resv_lock(dmabuf->resv, NULL);
	ret = dma_buf_get_memory(attach, &mem);
	if (ret)
		goto out_unlock;
	sgt = dma_buf_map_attachment(attach, DMA_BIDIRECTIONAL);
	if (IS_ERR(sgt)) {
		ret = PTR_ERR(sgt);
		goto out_put;
	}

	if (buf->dma) {
		/* Same table and CPU list as without DMA, so the same bytes. */
		row->sgd_nents = sgt->nents;
		same = bench_same_pages(mem, sgt);
	} else {
		row->mem_bytes = bench_memory_bytes(mem, &row->mem_allocs);
		row->sg_bytes = bench_sgt_bytes(sgt, &row->sg_allocs);
		row->sg_nents = sgt->nents;
		same = bench_same_ranges(mem, sgt);
	}
	if (mem->size != dmabuf->size || !same) {
		pr_err("%llu bytes in %u ranges%s: the sg_table and the memory description differ\n",
		       row->size, row->nr_ranges, buf->dma ? " (sg+dma)" : "");
		ret = -EINVAL;
	}

	dma_buf_unmap_attachment(attach, sgt, DMA_BIDIRECTIONAL);
out_put:
	dma_buf_put_memory(attach, mem);
out_unlock:
	dma_resv_unlock(dmabuf->resv);
	return ret;
}

/*
 * One row: get_memory and sg on the buffer, then sg+dma when @block backs
 * its ranges and @dma_ok says @dev is behind an IOMMU DMA domain.
 */
static int bench_row(struct device *dev, struct page *block,
		     unsigned int block_order, bool dma_ok, struct bench_row *row)
{
	struct bench_buf buf = { .size = row->size, .nr_ranges = row->nr_ranges };
	DEFINE_DMA_BUF_EXPORT_INFO(exp_info);
	struct dma_buf_attachment *attach;
	struct dma_buf *dmabuf;
	unsigned int i;
	int ret;

	if (block && div_u64(buf.size, buf.nr_ranges) <= PAGE_SIZE << block_order)
		buf.block = block;
	row->cpu = !!buf.block;
	buf.ranges = kvmalloc_array(buf.nr_ranges, sizeof(*buf.ranges), GFP_KERNEL);
	if (!buf.ranges)
		return -ENOMEM;
	for (i = 0; i < buf.nr_ranges; i++)
		buf.ranges[i] = bench_range(&buf, i);

	exp_info.ops = &bench_ops;
	exp_info.size = buf.size;
	exp_info.flags = O_RDWR;
	exp_info.priv = &buf;
	/* MMIO can go away: the core refuses it in a pinned buffer. */
	exp_info.memory_model = buf.block ? DMA_BUF_MODEL_PINNED :
					    DMA_BUF_MODEL_REVOCABLE;
	dmabuf = dma_buf_export(&exp_info);
	if (IS_ERR(dmabuf)) {
		kvfree(buf.ranges);
		return PTR_ERR(dmabuf);
	}

	attach = dma_buf_dynamic_attach(dmabuf, dev, &bench_attach_ops, NULL);
	if (IS_ERR(attach)) {
		ret = PTR_ERR(attach);
		goto out_put;
	}

	ret = bench_bytes(attach, row) ?:
	      bench_time(attach, bench_get_put, &row->mem) ?:
	      bench_time(attach, bench_map_unmap, &row->sg);
	if (!ret) {
		buf.one_by_one = true;
		ret = bench_time(attach, bench_get_put, &row->add1);
		buf.one_by_one = false;
	}
	if (!ret) {
		buf.share = true;
		ret = bench_time(attach, bench_get_put, &row->shared);
		buf.share = false;
	}
	if (!ret && buf.block && dma_ok) {
		buf.dma = true;
		ret = bench_bytes(attach, row) ?:
		      bench_time(attach, bench_map_unmap, &row->sgd);
		row->has_sgd = !ret;
	}

	dma_buf_detach(dmabuf, attach);
	/* The exporter's reference to the shared description. */
	dma_buf_memory_free(buf.shared);
out_put:
	/*
	 * The last reference goes when insmod returns to userspace, with
	 * @buf long gone: bench_release() does not look at it.
	 */
	dma_buf_put(dmabuf);
	kvfree(buf.ranges);
	return ret;
}

/* Output. */

static const char *bench_size_str(u64 size, char *s, size_t len)
{
	if (size >= SZ_1G)
		snprintf(s, len, "%llu GiB", size / SZ_1G);
	else if (size >= SZ_1M)
		snprintf(s, len, "%llu MiB", size / SZ_1M);
	else
		snprintf(s, len, "%llu KiB", size / SZ_1K);
	return s;
}

/* a / b in hundredths, for comparisons. */
static u64 bench_ratio(u64 a, u64 b)
{
	return b ? div64_u64(a * 100, b) : 0;
}

/* a / b as "x.yz". */
static const char *bench_ratio_str(u64 a, u64 b, char *s, size_t len)
{
	u64 r = bench_ratio(a, b);

	snprintf(s, len, "%llu.%02llu", r / 100, r % 100);
	return s;
}

static const struct {
	const char *name;
	int (*op)(struct dma_buf_attachment *attach);
} bench_parts[] = {
	{ "loop+call", bench_nop },
	{ "xa_alloc+xa_erase", bench_xa_pair },
	{ "refcount_inc+dec", bench_refcount_pair },
	{ "share+free", bench_share_pair },
	{ "kmalloc+kfree", bench_kmalloc },
};

/*
 * Where the time of a shared get+put goes: each part on its own, in a
 * loop of its own (the loop and the indirect call are the first part).
 */
static int bench_breakdown(void)
{
	struct bench_time t;
	unsigned int i;
	int ret = 0;

	bench_sealed = dma_buf_memory_alloc(1, 1, GFP_KERNEL);
	if (!bench_sealed)
		return -ENOMEM;
	ret = dma_buf_memory_add_chunk(bench_sealed, &bench_provider,
				       DMA_BUF_CHUNK_P2P_MMIO, 0) ?:
	      dma_buf_memory_add_range(bench_sealed, BENCH_PHYS_BASE, PAGE_SIZE) ?:
	      dma_buf_memory_seal(bench_sealed);
	pr_info("parts of a shared get+put, each timed alone (ns, median per call):\n");
	for (i = 0; i < ARRAY_SIZE(bench_parts) && !ret; i++) {
		ret = bench_time(NULL, bench_parts[i].op, &t);
		if (!ret)
			pr_info("row part name=%s ns=%llu ns_min=%llu ns_max=%llu iters=%u batches=%u\n",
				bench_parts[i].name, t.median, t.min, t.max,
				t.iters, t.batches);
	}
	dma_buf_memory_free(bench_sealed);
	return ret;
}

/*
 * What the IOMMU driver alone costs per physically discontiguous run, the
 * unit iommufd maps a dma-buf in (batch_to_domain(): one iommu_map() per
 * run): BENCH_IOMMU_BYTES of the block mapped at one IOVA range of a paging
 * domain of pci-testdev that no device is attached to (nothing can DMA
 * through it), as one run or as BENCH_IOMMU_RUNS runs of a page each with a
 * page between them, and unmapped with one iommu_unmap(), as iommufd unmaps
 * an area. The IOMMU page table gets the same number of PTEs either way.
 */
#define BENCH_IOMMU_BYTES	SZ_256K
#define BENCH_IOMMU_RUNS	(BENCH_IOMMU_BYTES / PAGE_SIZE)
#define BENCH_IOMMU_IOVA	SZ_16M
#define BENCH_IOMMU_PROT	(IOMMU_READ | IOMMU_WRITE | IOMMU_MMIO)

static const unsigned int bench_iommu_nr_runs[] = { 1, BENCH_IOMMU_RUNS };
static struct bench_time bench_iommu_times[ARRAY_SIZE(bench_iommu_nr_runs)];
static struct iommu_domain *bench_iommu_domain;
static phys_addr_t bench_iommu_phys;
static unsigned int bench_iommu_runs;

static int bench_iommu_map_unmap(struct dma_buf_attachment *attach)
{
	size_t len = BENCH_IOMMU_BYTES / bench_iommu_runs;
	unsigned int i;
	int ret = 0;

	for (i = 0; i < bench_iommu_runs; i++) {
		ret = iommu_map(bench_iommu_domain, BENCH_IOMMU_IOVA + i * len,
				bench_iommu_phys + 2 * i * len, len,
				BENCH_IOMMU_PROT, GFP_KERNEL_ACCOUNT);
		if (ret)
			break;
	}
	/* Runs 0 to i - 1 are mapped. */
	if (i && iommu_unmap(bench_iommu_domain, BENCH_IOMMU_IOVA,
			     i * len) != i * len && !ret)
		ret = -EIO;
	return ret;
}

/* Needs 2 * BENCH_IOMMU_BYTES of real memory at @phys. */
static int bench_iommu(struct device *dev, phys_addr_t phys)
{
	unsigned int i;
	int ret = 0;

	bench_iommu_domain = iommu_paging_domain_alloc(dev);
	if (IS_ERR(bench_iommu_domain))
		return PTR_ERR(bench_iommu_domain);
	bench_iommu_phys = phys;
	for (i = 0; i < ARRAY_SIZE(bench_iommu_nr_runs) && !ret; i++) {
		bench_iommu_runs = bench_iommu_nr_runs[i];
		ret = bench_time(NULL, bench_iommu_map_unmap,
				 &bench_iommu_times[i]);
	}
	iommu_domain_free(bench_iommu_domain);
	bench_iommu_domain = NULL;
	return ret;
}

static void bench_iommu_print(void)
{
	const struct bench_time *one = &bench_iommu_times[0];
	const struct bench_time *many = &bench_iommu_times[1];
	unsigned int i;

	pr_info("iommu_map()+iommu_unmap() of %u KiB, paging domain of pci-testdev with no device attached: 1 run %llu ns, %lu runs %llu ns (%lld ns per extra run)\n",
		BENCH_IOMMU_BYTES / SZ_1K, one->median, BENCH_IOMMU_RUNS,
		many->median, div_s64((s64)(many->median - one->median),
				      BENCH_IOMMU_RUNS - 1));
	for (i = 0; i < ARRAY_SIZE(bench_iommu_nr_runs); i++)
		pr_info("row iommu runs=%u bytes=%u ns=%llu ns_min=%llu ns_max=%llu iters=%u batches=%u\n",
			bench_iommu_nr_runs[i], BENCH_IOMMU_BYTES, bench_iommu_times[i].median,
			bench_iommu_times[i].min, bench_iommu_times[i].max,
			bench_iommu_times[i].iters, bench_iommu_times[i].batches);
}

static void bench_print(const struct bench_row *rows, unsigned int nr_rows,
			const struct bench_time *kmalloc_time)
{
	unsigned int i, j, fast = 0, fast_shared = 0, small = 0;
	unsigned int fast_dma = 0, fast_dma_shared = 0, nr_dma = 0;
	char s[16], tx[16], hx[16], bx[16], dns[16], dn[16], dx[16];

	pr_info("dma_buf_get_memory()+put vs dma_buf_map_attachment()+unmap, same attachment, same buffer\n");
	if (IS_ENABLED(CONFIG_KASAN) || IS_ENABLED(CONFIG_LOCKDEP) ||
	    IS_ENABLED(CONFIG_DEBUG_KMEMLEAK))
		pr_info("debug kernel (%s%s%s): each allocation costs many times the work around it, which pulls both paths toward their allocs\n",
			IS_ENABLED(CONFIG_KASAN) ? "KASAN " : "",
			IS_ENABLED(CONFIG_LOCKDEP) ? "lockdep " : "",
			IS_ENABLED(CONFIG_DEBUG_KMEMLEAK) ? "kmemleak" : "");
	else
		pr_info("kernel without KASAN, lockdep or kmemleak\n");
	pr_info("absolute times are those of this machine (QEMU TCG for make bench): compare the ratios\n");
	pr_info("sg: one sg entry per range split at 4 GiB - 4 KiB (dma_buf_phys_vec_to_sgt() shape), DMA addresses written without the DMA API: a lower bound\n");
	pr_info("sg+dma: one sg entry per range of CPU pages, dma_map_sgtable()/dma_unmap_sgtable() for pci-testdev behind intel-iommu (strict): what a real exporter pays; - where the ranges are fake MMIO (longer than the block)\n");
	pr_info("mem: cpu = every range is the same real block, mmio = fake P2P MMIO ranges\n");
	pr_info("get_mem: the exporter builds a description per call, adding its array of ranges at once; add1: the same, a dma_buf_memory_add_range() call per range; shared: it built one once and returns dma_buf_memory_share() of it (0 bytes and 0 allocs per call; the description's bytes are held once per buffer, whatever the number of importers)\n");
	pr_info("ns: median per call pair; bytes: metadata held by the description (sg+dma holds the same as sg); dsegs: DMA segments after the IOMMU merged the entries; sg x: sg / get_mem time, sh x: sg / shared time, dma x: sg+dma / shared time; bytes x: sg bytes / description bytes\n");
	pr_info("%8s %6s %4s | %10s %6s %6s %10s | %9s | %10s %6s %6s %6s | %10s %5s | %6s %6s %7s %7s\n",
		"size", "ranges", "mem", "get_mem ns", "bytes", "allocs", "add1 ns",
		"shared ns", "sg ns", "nents", "bytes", "allocs", "sg+dma ns",
		"dsegs", "sg x", "sh x", "dma x", "bytes x");
	for (i = 0; i < nr_rows; i++) {
		const struct bench_row *r = &rows[i];

		fast += bench_ratio(r->sg.median, r->mem.median) >= 1000;
		fast_shared += bench_ratio(r->sg.median, r->shared.median) >= 1000;
		small += bench_ratio(r->sg_bytes, r->mem_bytes) >= 200;
		if (r->has_sgd) {
			nr_dma++;
			fast_dma += bench_ratio(r->sgd.median, r->mem.median) >= 1000;
			fast_dma_shared += bench_ratio(r->sgd.median,
						       r->shared.median) >= 1000;
			snprintf(dns, sizeof(dns), "%llu", r->sgd.median);
			snprintf(dn, sizeof(dn), "%u", r->sgd_nents);
			bench_ratio_str(r->sgd.median, r->shared.median, dx, sizeof(dx));
		} else {
			strscpy(dns, "-");
			strscpy(dn, "-");
			strscpy(dx, "-");
		}
		pr_info("%8s %6u %4s | %10llu %6zu %6u %10llu | %9llu | %10llu %6u %6zu %6u | %10s %5s | %6s %6s %7s %7s\n",
			bench_size_str(r->size, s, sizeof(s)), r->nr_ranges,
			r->cpu ? "cpu" : "mmio",
			r->mem.median, r->mem_bytes, r->mem_allocs, r->add1.median,
			r->shared.median,
			r->sg.median, r->sg_nents, r->sg_bytes, r->sg_allocs,
			dns, dn,
			bench_ratio_str(r->sg.median, r->mem.median, tx, sizeof(tx)),
			bench_ratio_str(r->sg.median, r->shared.median, hx, sizeof(hx)),
			dx,
			bench_ratio_str(r->sg_bytes, r->mem_bytes, bx, sizeof(bx)));
	}
	for (i = 0; i < nr_rows; i++) {
		const struct bench_row *r = &rows[i];

		if (r->has_sgd)
			snprintf(dns, sizeof(dns), "%llu", r->sgd.median);
		pr_info("row size=%llu ranges=%u memory=%s mem_ns=%llu mem_ns_min=%llu mem_ns_max=%llu mem_iters=%u mem_batches=%u mem_bytes=%zu mem_allocs=%u add1_ns=%llu add1_ns_min=%llu add1_ns_max=%llu add1_iters=%u add1_batches=%u shared_ns=%llu shared_ns_min=%llu shared_ns_max=%llu shared_iters=%u shared_batches=%u sg_ns=%llu sg_ns_min=%llu sg_ns_max=%llu sg_iters=%u sg_batches=%u sg_nents=%u sg_bytes=%zu sg_allocs=%u sgd_ns=%s sgd_ns_min=%llu sgd_ns_max=%llu sgd_iters=%u sgd_batches=%u sgd_nents=%u\n",
			r->size, r->nr_ranges, r->cpu ? "cpu" : "mmio",
			r->mem.median, r->mem.min,
			r->mem.max, r->mem.iters, r->mem.batches, r->mem_bytes,
			r->mem_allocs,
			r->add1.median, r->add1.min, r->add1.max,
			r->add1.iters, r->add1.batches,
			r->shared.median, r->shared.min, r->shared.max,
			r->shared.iters, r->shared.batches,
			r->sg.median, r->sg.min, r->sg.max, r->sg.iters,
			r->sg.batches,
			r->sg_nents, r->sg_bytes, r->sg_allocs,
			r->has_sgd ? dns : "-", r->sgd.min, r->sgd.max,
			r->sgd.iters, r->sgd.batches, r->sgd_nents);
	}

	pr_info("one kmalloc(64)+kfree(): %llu ns; both paths pay it per allocation (allocs columns)\n",
		kmalloc_time->median);
	pr_info("goal get_memory >= 10x faster than sg: built per call %u of %u rows, shared %u of %u rows\n",
		fast, nr_rows, fast_shared, nr_rows);
	pr_info("get_memory >= 10x faster than sg+dma: built per call %u, shared %u of %u rows with sg+dma\n",
		fast_dma, fast_dma_shared, nr_dma);
	pr_info("goal get_memory <= 1/2 the bytes: %u of %u rows\n", small, nr_rows);
	/* Flat in size: per range count, slowest over fastest size. */
	for (j = 0; j < ARRAY_SIZE(bench_flat_ranges); j++) {
		u64 mem_lo = U64_MAX, mem_hi = 0, sg_lo = U64_MAX, sg_hi = 0;
		u64 sh_lo = U64_MAX, sh_hi = 0;
		unsigned int n = 0;

		for (i = 0; i < nr_rows; i++) {
			const struct bench_row *r = &rows[i];

			if (r->nr_ranges != bench_flat_ranges[j])
				continue;
			mem_lo = min(mem_lo, r->mem.median);
			mem_hi = max(mem_hi, r->mem.median);
			sh_lo = min(sh_lo, r->shared.median);
			sh_hi = max(sh_hi, r->shared.median);
			sg_lo = min(sg_lo, r->sg.median);
			sg_hi = max(sg_hi, r->sg.median);
			n++;
		}
		if (n < 2)
			continue;
		pr_info("flat in size, %u ranges, %u sizes: slowest/fastest get_memory built %s, shared %s, map_attachment %s\n",
			bench_flat_ranges[j], n,
			bench_ratio_str(mem_hi, mem_lo, tx, sizeof(tx)),
			bench_ratio_str(sh_hi, sh_lo, hx, sizeof(hx)),
			bench_ratio_str(sg_hi, sg_lo, bx, sizeof(bx)));
	}
}

/*
 * The importer's device: pci-testdev if there is one, with whether the DMA
 * API maps for it through an IOMMU DMA domain; else a faux device.
 */
static struct device *bench_device(struct pci_dev **pdev,
				   struct faux_device **fdev, bool *dma_ok)
{
	struct iommu_domain *domain;

	*dma_ok = false;
	*fdev = NULL;
	*pdev = pci_get_device(PCI_VENDOR_ID_REDHAT, BENCH_TESTDEV_ID, NULL);
	if (*pdev) {
		domain = iommu_get_domain_for_dev(&(*pdev)->dev);
		pr_info("importer device: pci-testdev %s, driver %s, IOMMU domain %s type %#x\n",
			pci_name(*pdev),
			(*pdev)->dev.driver ? (*pdev)->dev.driver->name : "none",
			domain ? "present," : "none,", domain ? domain->type : 0);
		if (domain && iommu_is_dma_domain(domain) && !(*pdev)->dev.driver) {
			bench_domain = domain;
			*dma_ok = true;
		} else {
			pr_info("pci-testdev is bound or has no IOMMU DMA domain: no sg+dma column\n");
		}
		return &(*pdev)->dev;
	}
	pr_info("no pci-testdev (1b36:0005): faux device, no sg+dma column\n");
	*fdev = faux_device_create(KBUILD_MODNAME, NULL, NULL);
	return *fdev ? &(*fdev)->dev : NULL;
}

static int __init dmabuf_bench_init(void)
{
	unsigned int i, n = 0, order = BENCH_BLOCK_ORDER;
	struct bench_time kmalloc_time;
	struct faux_device *fdev;
	struct pci_dev *pdev;
	struct device *dev;
	struct page *block;
	bool dma_ok, iommu_ok = false;
	int ret = 0;

	/* The device to attach with; nothing DMAs. */
	dev = bench_device(&pdev, &fdev, &dma_ok);
	if (!dev)
		return -ENODEV;
	/* The largest block up to 4 MiB: real memory behind short ranges. */
	for (;;) {
		block = alloc_pages(GFP_KERNEL | __GFP_NOWARN, order);
		if (block || !order)
			break;
		order--;
	}
	if (block)
		pr_info("real memory: one block of %lu KiB at %pa\n",
			(PAGE_SIZE << order) / SZ_1K, &(phys_addr_t){ page_to_phys(block) });
	else
		pr_info("no block of real memory: no sg+dma column\n");

	for (i = 0; i < ARRAY_SIZE(bench_cases) && !ret; i++) {
		struct bench_row *row = &bench_rows[n];

		row->size = bench_cases[i].size;
		row->nr_ranges = bench_cases[i].nr_ranges;
		ret = bench_row(dev, block, order, dma_ok, row);
		if (ret)
			pr_err("%llu bytes in %u ranges: error %d\n",
			       row->size, row->nr_ranges, ret);
		else
			n++;
	}
	if (!ret && block && dma_ok &&
	    PAGE_SIZE << order >= 2 * BENCH_IOMMU_BYTES) {
		iommu_ok = !bench_iommu(dev, page_to_phys(block));
		if (!iommu_ok)
			pr_err("iommu_map() of pci-testdev's paging domain: failed\n");
	}
	if (block)
		__free_pages(block, order);
	if (fdev)
		faux_device_destroy(fdev);
	pci_dev_put(pdev);
	bench_domain = NULL;
	if (!ret)
		ret = bench_time(NULL, bench_kmalloc, &kmalloc_time);

	/*
	 * Succeed even after an error: the dma-bufs exported above are
	 * released, by bench_release() of this module, only when insmod
	 * returns to userspace, and a failing init would unload the module
	 * first. scripts/bench.sh looks for "done".
	 */
	if (ret) {
		pr_err("failed\n");
		return 0;
	}
	bench_print(bench_rows, n, &kmalloc_time);
	if (iommu_ok)
		bench_iommu_print();
	if (bench_breakdown())
		pr_err("parts of a shared get+put: failed\n");
	pr_info("done\n");
	return 0;
}
module_init(dmabuf_bench_init);

static void __exit dmabuf_bench_exit(void)
{
}
module_exit(dmabuf_bench_exit);

MODULE_IMPORT_NS("DMA_BUF");
MODULE_DESCRIPTION("Benchmark of dma_buf_get_memory() against dma_buf_map_attachment()");
MODULE_LICENSE("GPL");

// SPDX-License-Identifier: GPL-2.0
/*
 * dma_buf_get_memory() vs dma_buf_map_attachment(): time and metadata.
 *
 * At insmod, for buffers of 4 KiB to 16 GiB made of 1, 16 or 256 physical
 * ranges, the module times dma_buf_get_memory() + dma_buf_put_memory() and
 * dma_buf_map_attachment() + dma_buf_unmap_attachment() on the same
 * attachment of the same buffer, counts the bytes each description holds,
 * and prints a table to the kernel log, every line starting "dmabuf-bench:".
 * The module stays loaded, doing nothing, until rmmod.
 *
 * The bench exporter describes PCI MMIO the way vfio-pci does: a buffer is
 * a list of ranges of one provider, and
 *
 * - get_memory returns them as one P2P MMIO chunk, built with
 *   dma_buf_memory_alloc() and dma_buf_memory_add_range();
 * - map_dma_buf returns them as an sg_table shaped like the one of
 *   dma_buf_phys_vec_to_sgt(), the kernel's helper for exporters of
 *   physical ranges (vfio-pci's map_dma_buf): one sg_alloc_table() entry
 *   per range, a range longer than the longest sg entry (4 GiB - 4 KiB)
 *   split over several, no CPU (page) list. Exporters holding an array of
 *   pages build the same table with sg_alloc_table_from_pages_segment(),
 *   which also walks every page, a cost growing with the buffer size that
 *   this bench does not measure.
 *
 * The physical addresses are fake: page-aligned ranges spread, with a gap
 * after each, over a window at 1 TiB where the guest has nothing. Nothing
 * dereferences them, maps them or hands them to hardware: the importer only
 * times and measures the descriptions. For the same reason map_dma_buf
 * writes the physical addresses into sg_dma_address() where a real exporter
 * would DMA-map each range (dma_map_phys() or an IOVA link) and unmap it
 * again in unmap_dma_buf: the sg path's time is a lower bound.
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
#include <linux/dma-resv.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/overflow.h>
#include <linux/pci-p2pdma.h>
#include <linux/scatterlist.h>
#include <linux/sizes.h>
#include <linux/slab.h>
#include <linux/sort.h>

#define BENCH_PHYS_BASE		((phys_addr_t)SZ_1T)
/* The longest sg entry dma_buf_phys_vec_to_sgt() builds. */
#define BENCH_SG_MAX_SEG	ALIGN_DOWN(UINT_MAX, PAGE_SIZE)
#define BENCH_BATCHES		15
#define BENCH_BATCH_NS		(20 * NSEC_PER_MSEC)
#define BENCH_MAX_ITERS		SZ_64K

static const u64 bench_sizes[] = { SZ_4K, SZ_1M, SZ_64M, SZ_1G, SZ_16G };
static const unsigned int bench_nr_ranges[] = { 1, 16, 256 };

#define BENCH_MAX_ROWS	(ARRAY_SIZE(bench_sizes) * ARRAY_SIZE(bench_nr_ranges))

/* Only compared by the core, never dereferenced. */
static struct p2pdma_provider bench_provider;

struct bench_buf {
	u64 size;
	unsigned int nr_ranges;
};

struct bench_time {
	u64 median;
	u64 min;
	u64 max;
	unsigned int iters;
};

struct bench_row {
	u64 size;
	unsigned int nr_ranges;
	struct bench_time mem, sg;
	size_t mem_bytes, sg_bytes;
	unsigned int mem_allocs, sg_allocs, sg_nents;
};

static struct bench_row bench_rows[BENCH_MAX_ROWS];

/* Range @i of @buf: equal ranges, each followed by a gap as long as itself. */
static struct phys_vec bench_range(const struct bench_buf *buf, unsigned int i)
{
	u64 len = div_u64(buf->size, buf->nr_ranges);

	return (struct phys_vec){
		.paddr = BENCH_PHYS_BASE + 2 * len * i,
		.len = len,
	};
}

/* The exporter. */

static int bench_get_memory(struct dma_buf_attachment *attach,
			    struct dma_buf_memory **mem)
{
	const struct bench_buf *buf = attach->dmabuf->priv;
	struct dma_buf_memory *m;
	unsigned int i;
	int ret;

	m = dma_buf_memory_alloc(1, buf->nr_ranges, GFP_KERNEL);
	if (!m)
		return -ENOMEM;
	ret = dma_buf_memory_add_chunk(m, &bench_provider,
				       DMA_BUF_CHUNK_P2P_MMIO, 0);
	for (i = 0; !ret && i < buf->nr_ranges; i++) {
		struct phys_vec range = bench_range(buf, i);

		ret = dma_buf_memory_add_range(m, range.paddr, range.len);
	}
	if (ret) {
		dma_buf_memory_free(m);
		return ret;
	}
	*mem = m;
	return 0;
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

	for (i = 0; i < buf->nr_ranges; i++)
		nents += DIV_ROUND_UP_ULL(bench_range(buf, i).len,
					  BENCH_SG_MAX_SEG);

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
		struct phys_vec range = bench_range(buf, i);

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
	.memory_models = DMA_BUF_ACCEPT_PINNED,
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
	u64 ns, per_call[BENCH_BATCHES];
	unsigned int i, iters;
	int ret;

	for (iters = 1; ; iters *= 2) {
		ret = bench_batch(attach, op, iters, &ns);
		if (ret)
			return ret;
		if (ns >= BENCH_BATCH_NS || iters >= BENCH_MAX_ITERS)
			break;
	}
	for (i = 0; i < BENCH_BATCHES; i++) {
		ret = bench_batch(attach, op, iters, &ns);
		if (ret)
			return ret;
		per_call[i] = div_u64(ns, iters);
	}
	sort(per_call, BENCH_BATCHES, sizeof(u64), bench_cmp_u64, NULL);
	t->median = per_call[BENCH_BATCHES / 2];
	t->min = per_call[0];
	t->max = per_call[BENCH_BATCHES - 1];
	t->iters = iters;
	return 0;
}

/*
 * Bytes of a description from bench_get_memory(), which sizes its
 * allocations exactly: the struct with its chunks, and the range pool.
 */
static size_t bench_memory_bytes(const struct dma_buf_memory *mem,
				 unsigned int *allocs)
{
	unsigned int i, nr_ranges = 0;
	size_t pool;

	for (i = 0; i < mem->nr_chunks; i++)
		nr_ranges += mem->chunks[i].nr_ranges;
	pool = nr_ranges * sizeof(struct phys_vec);
	pool = is_vmalloc_addr(mem->chunks[0].ranges) ? PAGE_ALIGN(pool) :
						       kmalloc_size_roundup(pool);
	*allocs = 2;
	return kmalloc_size_roundup(struct_size(mem, chunks, mem->nr_chunks)) +
	       pool;
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

/* Measure the sizes of both descriptions of the buffer, and compare them. */
static int bench_bytes(struct dma_buf_attachment *attach, struct bench_row *row)
{
	struct dma_buf *dmabuf = attach->dmabuf;
	struct dma_buf_memory *mem;
	struct sg_table *sgt;
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

	row->mem_bytes = bench_memory_bytes(mem, &row->mem_allocs);
	row->sg_bytes = bench_sgt_bytes(sgt, &row->sg_allocs);
	row->sg_nents = sgt->nents;
	if (mem->size != dmabuf->size || !bench_same_ranges(mem, sgt)) {
		pr_err("%llu bytes in %u ranges: the sg_table and the memory description differ\n",
		       row->size, row->nr_ranges);
		ret = -EINVAL;
	}

	dma_buf_unmap_attachment(attach, sgt, DMA_BIDIRECTIONAL);
out_put:
	dma_buf_put_memory(attach, mem);
out_unlock:
	dma_resv_unlock(dmabuf->resv);
	return ret;
}

static int bench_row(struct device *dev, struct bench_row *row)
{
	struct bench_buf buf = { .size = row->size, .nr_ranges = row->nr_ranges };
	DEFINE_DMA_BUF_EXPORT_INFO(exp_info);
	struct dma_buf_attachment *attach;
	struct dma_buf *dmabuf;
	int ret;

	exp_info.ops = &bench_ops;
	exp_info.size = buf.size;
	exp_info.flags = O_RDWR;
	exp_info.priv = &buf;
	exp_info.memory_model = DMA_BUF_MODEL_PINNED;
	dmabuf = dma_buf_export(&exp_info);
	if (IS_ERR(dmabuf))
		return PTR_ERR(dmabuf);

	attach = dma_buf_dynamic_attach(dmabuf, dev, &bench_attach_ops, NULL);
	if (IS_ERR(attach)) {
		ret = PTR_ERR(attach);
		goto out_put;
	}

	ret = bench_bytes(attach, row) ?:
	      bench_time(attach, bench_get_put, &row->mem) ?:
	      bench_time(attach, bench_map_unmap, &row->sg);

	dma_buf_detach(dmabuf, attach);
out_put:
	/*
	 * The last reference goes when insmod returns to userspace, with
	 * @buf long gone: bench_release() does not look at it.
	 */
	dma_buf_put(dmabuf);
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

static void bench_print(const struct bench_row *rows, unsigned int nr_rows,
			const struct bench_time *kmalloc_time)
{
	unsigned int i, j, fast = 0, small = 0;
	char s[16], tx[16], bx[16];

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
	pr_info("sg path: one sg entry per range split at 4 GiB - 4 KiB (dma_buf_phys_vec_to_sgt() shape), without its DMA mapping: a lower bound\n");
	pr_info("ns: median per call pair; bytes: metadata held by the description; x: map_attachment / get_memory\n");
	pr_info("%8s %6s | %10s %6s %6s | %10s %6s %6s %6s | %7s %7s\n",
		"size", "ranges", "get_mem ns", "bytes", "allocs",
		"map_att ns", "nents", "bytes", "allocs", "time x", "bytes x");
	for (i = 0; i < nr_rows; i++) {
		const struct bench_row *r = &rows[i];

		fast += bench_ratio(r->sg.median, r->mem.median) >= 1000;
		small += bench_ratio(r->sg_bytes, r->mem_bytes) >= 200;
		pr_info("%8s %6u | %10llu %6zu %6u | %10llu %6u %6zu %6u | %7s %7s\n",
			bench_size_str(r->size, s, sizeof(s)), r->nr_ranges,
			r->mem.median, r->mem_bytes, r->mem_allocs,
			r->sg.median, r->sg_nents, r->sg_bytes, r->sg_allocs,
			bench_ratio_str(r->sg.median, r->mem.median, tx, sizeof(tx)),
			bench_ratio_str(r->sg_bytes, r->mem_bytes, bx, sizeof(bx)));
	}
	for (i = 0; i < nr_rows; i++) {
		const struct bench_row *r = &rows[i];

		pr_info("row size=%llu ranges=%u mem_ns=%llu mem_ns_min=%llu mem_ns_max=%llu mem_iters=%u mem_bytes=%zu mem_allocs=%u sg_ns=%llu sg_ns_min=%llu sg_ns_max=%llu sg_iters=%u sg_nents=%u sg_bytes=%zu sg_allocs=%u\n",
			r->size, r->nr_ranges, r->mem.median, r->mem.min,
			r->mem.max, r->mem.iters, r->mem_bytes, r->mem_allocs,
			r->sg.median, r->sg.min, r->sg.max, r->sg.iters,
			r->sg_nents, r->sg_bytes, r->sg_allocs);
	}

	pr_info("one kmalloc(64)+kfree(): %llu ns; both paths pay it per allocation (allocs columns)\n",
		kmalloc_time->median);
	pr_info("goal get_memory >= 10x faster: %u of %u rows\n", fast, nr_rows);
	pr_info("goal get_memory <= 1/2 the bytes: %u of %u rows\n", small, nr_rows);
	/* Flat in size: per range count, slowest over fastest size. */
	for (j = 0; j < ARRAY_SIZE(bench_nr_ranges); j++) {
		u64 mem_lo = U64_MAX, mem_hi = 0, sg_lo = U64_MAX, sg_hi = 0;
		unsigned int n = 0;

		for (i = 0; i < nr_rows; i++) {
			const struct bench_row *r = &rows[i];

			if (r->nr_ranges != bench_nr_ranges[j])
				continue;
			mem_lo = min(mem_lo, r->mem.median);
			mem_hi = max(mem_hi, r->mem.median);
			sg_lo = min(sg_lo, r->sg.median);
			sg_hi = max(sg_hi, r->sg.median);
			n++;
		}
		if (n < 2)
			continue;
		pr_info("flat in size, %u ranges, %u sizes: slowest/fastest get_memory %s, map_attachment %s\n",
			bench_nr_ranges[j], n,
			bench_ratio_str(mem_hi, mem_lo, tx, sizeof(tx)),
			bench_ratio_str(sg_hi, sg_lo, bx, sizeof(bx)));
	}
}

static int __init dmabuf_bench_init(void)
{
	struct bench_time kmalloc_time;
	struct faux_device *fdev;
	unsigned int i, j, n = 0;
	int ret = 0;

	/* A real device to attach with; nothing DMAs. */
	fdev = faux_device_create(KBUILD_MODNAME, NULL, NULL);
	if (!fdev)
		return -ENODEV;

	for (i = 0; i < ARRAY_SIZE(bench_sizes) && !ret; i++) {
		for (j = 0; j < ARRAY_SIZE(bench_nr_ranges) && !ret; j++) {
			struct bench_row *row = &bench_rows[n];

			/* No range shorter than a page. */
			if (bench_nr_ranges[j] > bench_sizes[i] >> PAGE_SHIFT)
				continue;
			row->size = bench_sizes[i];
			row->nr_ranges = bench_nr_ranges[j];
			ret = bench_row(&fdev->dev, row);
			if (ret)
				pr_err("%llu bytes in %u ranges: error %d\n",
				       row->size, row->nr_ranges, ret);
			else
				n++;
		}
	}
	faux_device_destroy(fdev);
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

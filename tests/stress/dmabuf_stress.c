// SPDX-License-Identifier: GPL-2.0-only
/*
 * Stress test of dma_buf_get_memory(): kthreads hammer one dma-buf of each
 * memory model at once and check the rules of the kAPI as they go.
 *
 * In every case importer threads attach, get and put descriptions, map and
 * unmap sg_tables (dma_buf_map_attachment() of an exporter that serves it
 * with dma_buf_memory_map()) and detach, in random order, holding up to two
 * descriptions and one table from one operation to the next. A revoker
 * thread revokes and restores the REVOCABLE buffer, a mover thread moves the
 * DYNAMIC one. The exporter answers every other get_memory, and every other
 * map_dma_buf, from a description it builds for the call, and the others
 * from one it built and sealed once per generation (dma_buf_memory_share()).
 * One case per model, and one with all three buffers at once. A case runs
 * until its threads have done "ops" operations (module parameter; the four
 * cases' defaults add up to 10^5) and prints how fast they went. How fast is
 * reported, never judged: "seconds" only bounds a case that hangs or
 * livelocks, and a case stopped by it fails.
 *
 * The rules under test, each checked where it can be seen to break:
 *
 * 1. While a buffer is revoked dma_buf_get_memory() fails with -ENODEV and
 *    leaves NULL, dma_buf_map_attachment() fails with -ENODEV, and neither
 *    reaches the exporter; while it is not, neither fails with -ENODEV.
 * 2. Every importer is invalidated exactly once for each revoke or move
 *    that happened while it was attached, from inside that revoke or move,
 *    and never otherwise; a revoke of a revoked buffer invalidates nobody.
 *    Under the reservation lock the exporter counts, for every attachment on
 *    the buffer's list, the invalidations it owes it, and the importer counts
 *    those it receives; once dma_buf_detach() returned, the two are equal.
 * 3. After a move nobody has the old ranges. Each move changes the physical
 *    base of the ranges (and every other generation has half the buffer in
 *    P2P MMIO); every description an importer gets, holds or puts, and every
 *    table it maps, holds or unmaps, is of the exporter's current generation,
 *    range by range; once dma_buf_invalidate_mappings() or dma_buf_revoke()
 *    returns, no description or table of the buffer is out.
 * 4. No description outlives its attachment: the core counts for each
 *    attachment what the importer holds (&dma_buf_attachment.nr_memory),
 *    importers put everything before dma_buf_detach(), and the exporter's
 *    put_memory is never called for an attachment being detached (which is
 *    where the core puts, with a warning, what an importer leaked).
 * 5. Counts balance: per exporter gets == puts, maps == unmaps and
 *    attaches == detaches, and what importers got, put, mapped and unmapped
 *    is what the exporters served and took back.
 *
 * Locking follows the documented contracts: get/put, map/unmap, revoke,
 * restore and invalidate run with the reservation lock held, and all state
 * the threads share is under that lock, which makes the counts exact.
 * Importers put and unmap from their invalidate_mappings, inside the revoke
 * or move, as the exporter holds the lock around it.
 *
 * CPU ranges are pages of a block each exporter allocates, as the core checks
 * that they are RAM. P2P MMIO ranges lie at a fake address beyond the
 * guest's RAM, tagged with a fake provider that is only compared, and are
 * never mapped: dma_buf_memory_map() refuses a description that mixes CPU and
 * P2P chunks, and the importers check that it does. Pinned buffers have no
 * P2P chunk. Importers attach with a KUnit device, mapped by dma-direct.
 */

#define pr_fmt(fmt) "dmabuf-stress: " fmt

#include <kunit/device.h>
#include <kunit/test.h>
#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/dma-buf.h>
#include <linux/dma-buf-memory.h>
#include <linux/dma-mapping.h>
#include <linux/dma-resv.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/gfp.h>
#include <linux/jiffies.h>
#include <linux/kernel.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/math64.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/random.h>
#include <linux/scatterlist.h>
#include <linux/sizes.h>

static unsigned long stress_ops = 25000;
module_param_named(ops, stress_ops, ulong, 0444);
MODULE_PARM_DESC(ops, "Operations each case runs (default: 25000)");

static unsigned int stress_seconds = 300;
module_param_named(seconds, stress_seconds, uint, 0444);
MODULE_PARM_DESC(seconds, "Time after which a case that has not finished fails (default: 300)");

#define STRESS_SIZE		(8 * PAGE_SIZE)
/* Each generation's ranges start in the next of 4 slots of 16 pages. */
#define STRESS_SLOTS		4
#define STRESS_SLOT		(16 * PAGE_SIZE)
#define STRESS_BLOCK_ORDER	6
/* Where the guest has no RAM: never accessed. */
#define STRESS_MMIO_BASE	((phys_addr_t)SZ_1T)
/* Every generation has two ranges, in one chunk or two. */
#define STRESS_RANGES		2
#define STRESS_CHUNKS		2
/* Descriptions an importer holds at a time, at most. */
#define STRESS_HOLD		2
#define STRESS_MAX_EXPORTERS	3
#define STRESS_MAX_THREADS	6
/* Violations printed per rule and case; all are counted. */
#define STRESS_REPORTS		3
#define STRESS_DIR		DMA_BIDIRECTIONAL
#define STRESS_ACCEPT_ALL	(DMA_BUF_ACCEPT_PINNED | \
				 DMA_BUF_ACCEPT_REVOCABLE | \
				 DMA_BUF_ACCEPT_DYNAMIC)

/* The rules of the header comment; violations are counted per rule. */
enum stress_rule {
	STRESS_REVOKED,
	STRESS_INVALIDATE,
	STRESS_STALE,
	STRESS_TRACKING,
	STRESS_ERRNO,
	STRESS_SETUP,
	STRESS_NR_RULES,
};

static const char * const stress_rule_names[STRESS_NR_RULES] = {
	[STRESS_REVOKED] = "revoked memory was served",
	[STRESS_INVALIDATE] = "invalidations differ from revokes and moves",
	[STRESS_STALE] = "memory of another generation",
	[STRESS_TRACKING] = "description tracking",
	[STRESS_ERRNO] = "unexpected result",
	[STRESS_SETUP] = "test setup",
};

/* What the threads count: operations first, then what they led to. */
enum stress_count {
	STRESS_ATTACH,
	STRESS_DETACH,
	STRESS_GET,
	STRESS_PUT,
	STRESS_MAP,
	STRESS_UNMAP,
	STRESS_VERIFY,
	STRESS_REVOKE,
	STRESS_RESTORE,
	STRESS_MOVE,
	STRESS_NR_OPS,
	STRESS_GOT = STRESS_NR_OPS,
	STRESS_GET_ENODEV,
	STRESS_MAPPED,
	STRESS_MAP_ENODEV,
	STRESS_MAP_EOPNOTSUPP,
	STRESS_INVALIDATED,
	STRESS_INVALIDATED_PUT,
	STRESS_INVALIDATED_UNMAP,
	STRESS_NR_COUNTS,
};

static const char * const stress_count_names[STRESS_NR_COUNTS] = {
	[STRESS_ATTACH] = "attach",
	[STRESS_DETACH] = "detach",
	[STRESS_GET] = "get",
	[STRESS_PUT] = "put",
	[STRESS_MAP] = "map",
	[STRESS_UNMAP] = "unmap",
	[STRESS_VERIFY] = "verify",
	[STRESS_REVOKE] = "revoke",
	[STRESS_RESTORE] = "restore",
	[STRESS_MOVE] = "move",
	[STRESS_GOT] = "got",
	[STRESS_GET_ENODEV] = "get-ENODEV",
	[STRESS_MAPPED] = "mapped",
	[STRESS_MAP_ENODEV] = "map-ENODEV",
	[STRESS_MAP_EOPNOTSUPP] = "map-EOPNOTSUPP",
	[STRESS_INVALIDATED] = "invalidated",
	[STRESS_INVALIDATED_PUT] = "invalidated-put",
	[STRESS_INVALIDATED_UNMAP] = "invalidated-unmap",
};

static const char * const stress_model_names[DMA_BUF_MODEL_COUNT] = {
	[DMA_BUF_MODEL_NONE] = "none",
	[DMA_BUF_MODEL_PINNED] = "pinned",
	[DMA_BUF_MODEL_REVOCABLE] = "revocable",
	[DMA_BUF_MODEL_DYNAMIC] = "dynamic",
};

struct stress_case;

struct stress_exporter {
	struct stress_case *sc;
	struct dma_buf *dmabuf;
	enum dma_buf_memory_model model;
	const char *name;
	phys_addr_t block;
	/* Under the reservation lock of @dmabuf: */
	struct dma_buf_memory *shared;	/* sealed, of generation @gen */
	unsigned long gen;		/* moves so far */
	unsigned long events;		/* revokes and moves so far */
	bool in_event;			/* inside a revoke or move */
	bool revoked;			/* between a revoke and its restore */
	unsigned long nr_get;
	unsigned long nr_put;
	unsigned long nr_map_calls;
	unsigned long nr_map;
	unsigned long nr_unmap;
	unsigned long nr_revoke;
	unsigned long nr_move;
	/* &dma_buf_ops.attach and .detach run without the lock. */
	atomic_long_t nr_attach;
	atomic_long_t nr_detach;
};

/*
 * One attachment, as both sides see it: the test's bookkeeping, which the
 * exporter finds in &dma_buf_attachment.priv and the importer in
 * &dma_buf_attachment.importer_priv. All but @exp and @attach are under the
 * reservation lock.
 */
struct stress_link {
	struct stress_exporter *exp;
	struct dma_buf_attachment *attach;
	struct dma_buf_memory *mem[STRESS_HOLD];
	unsigned long mem_gen[STRESS_HOLD];
	unsigned int nr_mem;
	struct sg_table *sgt;
	unsigned long sgt_gen;
	/* The importer put everything and is detaching. */
	bool detaching;
	/* Exporter: revokes and moves while the attachment was on its list. */
	unsigned long owed;
	/* Importer: invalidations, the event of the last, what they took. */
	unsigned long received;
	unsigned long last_event;
	unsigned long invalidated_put;
	unsigned long invalidated_unmap;
};

struct stress_thread {
	struct stress_case *sc;
	/* The buffer of a revoker or mover. */
	struct stress_exporter *exp;
	/* The attachment of an importer. */
	struct stress_link link;
	struct completion done;
	unsigned long n[STRESS_NR_COUNTS];
};

struct stress_case {
	struct device *dev;
	struct stress_exporter *exp[STRESS_MAX_EXPORTERS];
	unsigned int nr_exp;
	struct stress_thread thread[STRESS_MAX_THREADS];
	unsigned int nr_threads;
	atomic_long_t ops;
	bool stop;
	atomic_t broken[STRESS_NR_RULES];
};

static atomic_long_t stress_total_ops = ATOMIC_LONG_INIT(0);

/* Only compared, never dereferenced: P2P chunks are never mapped. */
static struct p2pdma_provider stress_provider;

/*
 * Count a violation of @rule unless @ok, and print the first few; the test
 * thread turns the counts into KUnit failures once the threads are done.
 */
static __printf(4, 5) bool stress_check(struct stress_case *sc, bool ok,
					enum stress_rule rule,
					const char *fmt, ...)
{
	struct va_format vaf;
	va_list args;

	if (likely(ok))
		return true;
	if (atomic_inc_return(&sc->broken[rule]) > STRESS_REPORTS)
		return false;
	va_start(args, fmt);
	vaf.fmt = fmt;
	vaf.va = &args;
	pr_err("%s: %pV\n", stress_rule_names[rule], &vaf);
	va_end(args);
	return false;
}

static bool stress_stopped(struct stress_case *sc)
{
	return READ_ONCE(sc->stop);
}

static void stress_op(struct stress_thread *t, enum stress_count op)
{
	t->n[op]++;
	atomic_long_inc(&t->sc->ops);
}

/* Let the other threads at the buffer between two revokes or moves. */
static void stress_pause(void)
{
	usleep_range(20, 100);
}

/* The memory: two ranges per generation, at a base each move changes. */

struct stress_range {
	phys_addr_t paddr;
	size_t len;
	bool p2p;
};

static bool stress_gen_p2p(const struct stress_exporter *exp,
			   unsigned long gen)
{
	return exp->model == DMA_BUF_MODEL_DYNAMIC && (gen & 1);
}

static void stress_layout(const struct stress_exporter *exp, unsigned long gen,
			  struct stress_range r[STRESS_RANGES])
{
	size_t off = (gen % STRESS_SLOTS) * STRESS_SLOT;

	if (stress_gen_p2p(exp, gen)) {
		r[0] = (struct stress_range){ exp->block + off, STRESS_SIZE / 2, false };
		r[1] = (struct stress_range){ STRESS_MMIO_BASE + off, STRESS_SIZE / 2, true };
		return;
	}
	/* One CPU chunk, with a hole of a page between its two ranges. */
	r[0] = (struct stress_range){ exp->block + off, 3 * PAGE_SIZE, false };
	r[1] = (struct stress_range){ exp->block + off + 4 * PAGE_SIZE,
				      STRESS_SIZE - 3 * PAGE_SIZE, false };
}

static struct dma_buf_memory *stress_build(const struct stress_exporter *exp,
					   unsigned long gen)
{
	struct stress_range r[STRESS_RANGES];
	struct dma_buf_memory *mem;
	unsigned int i;
	int ret = 0;

	mem = dma_buf_memory_alloc(STRESS_CHUNKS, STRESS_RANGES, GFP_KERNEL);
	if (!mem)
		return NULL;
	stress_layout(exp, gen, r);
	for (i = 0; i < STRESS_RANGES && !ret; i++) {
		if (!i || r[i].p2p != r[i - 1].p2p)
			ret = r[i].p2p ?
			      dma_buf_memory_add_chunk(mem, &stress_provider,
						       DMA_BUF_CHUNK_P2P_MMIO, 0) :
			      dma_buf_memory_add_chunk(mem, NULL,
						       DMA_BUF_CHUNK_CPU, 0);
		if (!ret)
			ret = dma_buf_memory_add_range(mem, r[i].paddr, r[i].len);
	}
	if (ret) {
		dma_buf_memory_free(mem);
		return NULL;
	}
	return mem;
}

static struct dma_buf_memory *stress_build_shared(const struct stress_exporter *exp,
						  unsigned long gen)
{
	struct dma_buf_memory *mem = stress_build(exp, gen);

	if (mem && dma_buf_memory_seal(mem)) {
		dma_buf_memory_free(mem);
		return NULL;
	}
	return mem;
}

/* Whether @chunk is of the kind and provider @r needs. */
static bool stress_chunk_is(const struct dma_buf_chunk *chunk,
			    const struct stress_range *r)
{
	if (chunk->flags)
		return false;
	if (r->p2p)
		return chunk->kind == DMA_BUF_CHUNK_P2P_MMIO &&
		       chunk->provider == &stress_provider;
	return chunk->kind == DMA_BUF_CHUNK_CPU && !chunk->provider;
}

/* Whether @mem describes generation @gen of @exp, range by range. */
static bool stress_memory_is(const struct stress_exporter *exp,
			     const struct dma_buf_memory *mem, unsigned long gen)
{
	struct stress_range r[STRESS_RANGES];
	unsigned int i, j, k = 0;

	if (!mem || mem->size != STRESS_SIZE)
		return false;
	stress_layout(exp, gen, r);
	for (i = 0; i < mem->nr_chunks; i++) {
		const struct dma_buf_chunk *chunk = &mem->chunks[i];

		for (j = 0; j < chunk->nr_ranges; j++, k++)
			if (k == STRESS_RANGES || !stress_chunk_is(chunk, &r[k]) ||
			    chunk->ranges[j].paddr != r[k].paddr ||
			    chunk->ranges[j].len != r[k].len)
				return false;
	}
	return k == STRESS_RANGES;
}

/*
 * Whether @sgt maps generation @gen of @exp (CPU memory only): one entry with
 * the pages of each range, DMA-mapped in full.
 */
static bool stress_table_is(const struct stress_exporter *exp,
			    struct sg_table *sgt, unsigned long gen)
{
	struct stress_range r[STRESS_RANGES];
	struct scatterlist *sg;
	size_t dma_len = 0;
	unsigned int i;

	stress_layout(exp, gen, r);
	if (sgt->orig_nents != STRESS_RANGES || !sgt->nents)
		return false;
	for_each_sgtable_sg(sgt, sg, i)
		if (r[i].p2p || sg_page(sg) != phys_to_page(r[i].paddr) ||
		    sg->offset || sg->length != r[i].len)
			return false;
	for_each_sgtable_dma_sg(sgt, sg, i) {
		if (sg_dma_address(sg) == DMA_MAPPING_ERROR)
			return false;
		dma_len += sg_dma_len(sg);
	}
	return dma_len == STRESS_SIZE;
}

/* The exporter. */

static int stress_attach_op(struct dma_buf *dmabuf,
			    struct dma_buf_attachment *attach)
{
	struct stress_exporter *exp = dmabuf->priv;

	/* A real exporter keeps its own per-attachment data here. */
	attach->priv = attach->importer_priv;
	atomic_long_inc(&exp->nr_attach);
	return 0;
}

static void stress_detach_op(struct dma_buf *dmabuf,
			     struct dma_buf_attachment *attach)
{
	struct stress_exporter *exp = dmabuf->priv;

	atomic_long_inc(&exp->nr_detach);
}

static int stress_get_memory(struct dma_buf_attachment *attach,
			     struct dma_buf_memory **mem)
{
	struct stress_exporter *exp = attach->dmabuf->priv;
	struct dma_buf_memory *m;

	dma_resv_assert_held(attach->dmabuf->resv);
	stress_check(exp->sc, !exp->revoked, STRESS_REVOKED,
		     "%s: get_memory called while revoked", exp->name);

	if (exp->nr_get & 1) {
		m = stress_build(exp, exp->gen);
		if (!m)
			return -ENOMEM;
	} else {
		m = dma_buf_memory_share(exp->shared);
	}
	exp->nr_get++;
	*mem = m;
	return 0;
}

static void stress_put_memory(struct dma_buf_attachment *attach,
			      struct dma_buf_memory *mem)
{
	struct stress_exporter *exp = attach->dmabuf->priv;
	struct stress_link *link = attach->priv;

	dma_resv_assert_held(attach->dmabuf->resv);
	stress_check(exp->sc, !link->detaching, STRESS_TRACKING,
		     "%s: put_memory while detaching an importer that had put everything",
		     exp->name);
	/* Importers put from inside a move, before the generation changes. */
	stress_check(exp->sc, stress_memory_is(exp, mem, exp->gen), STRESS_STALE,
		     "%s: a description put is not of generation %lu",
		     exp->name, exp->gen);
	exp->nr_put++;
	dma_buf_memory_free(mem);
}

static struct sg_table *stress_map(struct dma_buf_attachment *attach,
				   enum dma_data_direction dir)
{
	struct stress_exporter *exp = attach->dmabuf->priv;
	struct dma_buf_memory *mem;
	struct sg_table *sgt;

	dma_resv_assert_held(attach->dmabuf->resv);
	stress_check(exp->sc, !exp->revoked, STRESS_REVOKED,
		     "%s: map_dma_buf called while revoked", exp->name);

	/* The table does not refer to the description: it may go at once. */
	if (exp->nr_map_calls++ & 1) {
		mem = stress_build(exp, exp->gen);
		if (!mem)
			return ERR_PTR(-ENOMEM);
		sgt = dma_buf_memory_map(attach, mem, dir);
		dma_buf_memory_free(mem);
	} else {
		sgt = dma_buf_memory_map(attach, exp->shared, dir);
	}
	if (!IS_ERR(sgt))
		exp->nr_map++;
	return sgt;
}

static void stress_unmap(struct dma_buf_attachment *attach,
			 struct sg_table *sgt, enum dma_data_direction dir)
{
	struct stress_exporter *exp = attach->dmabuf->priv;

	exp->nr_unmap++;
	dma_buf_memory_unmap(attach, sgt, dir);
}

static void stress_release(struct dma_buf *dmabuf)
{
	struct stress_exporter *exp = dmabuf->priv;

	dma_buf_memory_free(exp->shared);
	exp->shared = NULL;
}

static const struct dma_buf_ops stress_exporter_ops = {
	.attach = stress_attach_op,
	.detach = stress_detach_op,
	.map_dma_buf = stress_map,
	.unmap_dma_buf = stress_unmap,
	.release = stress_release,
	.get_memory = stress_get_memory,
	.put_memory = stress_put_memory,
};

/* Before a revoke or move: owe each attachment on the list one invalidation. */
static void stress_event_begin(struct stress_exporter *exp)
{
	struct dma_buf_attachment *attach;

	dma_resv_assert_held(exp->dmabuf->resv);
	exp->events++;
	exp->in_event = true;
	list_for_each_entry(attach, &exp->dmabuf->attachments, node) {
		struct stress_link *link = attach->priv;

		link->owed++;
	}
}

/* Once it returned: every importer has given everything back. */
static void stress_event_end(struct stress_exporter *exp, const char *what)
{
	exp->in_event = false;
	stress_check(exp->sc, exp->nr_get == exp->nr_put &&
		     exp->nr_map == exp->nr_unmap, STRESS_STALE,
		     "%s: %lu descriptions and %lu tables still out after a %s",
		     exp->name, exp->nr_get - exp->nr_put,
		     exp->nr_map - exp->nr_unmap, what);
}

static int stress_revoker(void *data)
{
	struct stress_thread *t = data;
	struct stress_exporter *exp = t->exp;
	struct stress_case *sc = t->sc;
	struct dma_resv *resv = exp->dmabuf->resv;

	while (!stress_stopped(sc)) {
		dma_resv_lock(resv, NULL);
		stress_event_begin(exp);
		exp->revoked = true;
		dma_buf_revoke(exp->dmabuf);
		/* Now and then twice: the second revoke does nothing. */
		if (!get_random_u32_below(4))
			dma_buf_revoke(exp->dmabuf);
		stress_check(sc, dma_buf_is_revoked(exp->dmabuf), STRESS_ERRNO,
			     "%s: not revoked after dma_buf_revoke()", exp->name);
		stress_event_end(exp, "revoke");
		exp->nr_revoke++;
		dma_resv_unlock(resv);
		stress_op(t, STRESS_REVOKE);
		stress_pause();

		dma_resv_lock(resv, NULL);
		dma_buf_restore(exp->dmabuf);
		exp->revoked = false;
		stress_check(sc, !dma_buf_is_revoked(exp->dmabuf), STRESS_ERRNO,
			     "%s: revoked after dma_buf_restore()", exp->name);
		dma_resv_unlock(resv);
		stress_op(t, STRESS_RESTORE);
		stress_pause();
	}
	kthread_complete_and_exit(&t->done, 0);
}

static int stress_mover(void *data)
{
	struct stress_thread *t = data;
	struct stress_exporter *exp = t->exp;
	struct stress_case *sc = t->sc;
	struct dma_resv *resv = exp->dmabuf->resv;
	struct dma_buf_memory *next;

	while (!stress_stopped(sc)) {
		dma_resv_lock(resv, NULL);
		next = stress_build_shared(exp, exp->gen + 1);
		if (stress_check(sc, next, STRESS_SETUP,
				 "%s: cannot build generation %lu",
				 exp->name, exp->gen + 1)) {
			stress_event_begin(exp);
			dma_buf_invalidate_mappings(exp->dmabuf);
			stress_event_end(exp, "move");
			/* The new ranges, for the next get_memory. */
			dma_buf_memory_free(exp->shared);
			exp->shared = next;
			exp->gen++;
			exp->nr_move++;
		}
		dma_resv_unlock(resv);
		stress_op(t, STRESS_MOVE);
		stress_pause();
	}
	kthread_complete_and_exit(&t->done, 0);
}

/* The importers. */

static void stress_invalidate(struct dma_buf_attachment *attach)
{
	struct stress_link *link = attach->importer_priv;
	struct stress_exporter *exp = link->exp;

	dma_resv_assert_held(attach->dmabuf->resv);
	stress_check(exp->sc, exp->in_event, STRESS_INVALIDATE,
		     "%s: invalidated outside a revoke or move", exp->name);
	stress_check(exp->sc, link->last_event != exp->events, STRESS_INVALIDATE,
		     "%s: invalidated twice by revoke or move %lu",
		     exp->name, exp->events);
	link->last_event = exp->events;
	link->received++;

	/* Stop using the memory, then give it back: the put is the unmap. */
	while (link->nr_mem) {
		link->nr_mem--;
		dma_buf_put_memory(attach, link->mem[link->nr_mem]);
		link->invalidated_put++;
	}
	if (link->sgt) {
		dma_buf_unmap_attachment(attach, link->sgt, STRESS_DIR);
		link->sgt = NULL;
		link->invalidated_unmap++;
	}
}

static const struct dma_buf_attach_ops stress_importer_ops = {
	.allow_peer2peer = true,
	.memory_models = STRESS_ACCEPT_ALL,
	.invalidate_mappings = stress_invalidate,
};

static void stress_check_tracking(struct stress_thread *t)
{
	struct stress_link *link = &t->link;

	stress_check(t->sc, link->attach->nr_memory == link->nr_mem,
		     STRESS_TRACKING,
		     "%s: the core counts %u descriptions, the importer holds %u",
		     link->exp->name, link->attach->nr_memory, link->nr_mem);
}

static void stress_get(struct stress_thread *t)
{
	struct stress_link *link = &t->link;
	struct stress_exporter *exp = link->exp;
	/* dma_buf_get_memory() must leave NULL when it fails. */
	struct dma_buf_memory *mem = ERR_PTR(-EFAULT);
	int ret;

	ret = dma_buf_get_memory(link->attach, &mem);
	stress_op(t, STRESS_GET);
	if (ret) {
		stress_check(t->sc, !mem, STRESS_ERRNO,
			     "%s: failed get left a description", exp->name);
		if (ret == -ENODEV) {
			t->n[STRESS_GET_ENODEV]++;
			stress_check(t->sc, exp->revoked, STRESS_ERRNO,
				     "%s: get failed with -ENODEV, not revoked",
				     exp->name);
		} else {
			stress_check(t->sc, false, STRESS_ERRNO,
				     "%s: get failed: %d", exp->name, ret);
		}
		return;
	}
	t->n[STRESS_GOT]++;
	stress_check(t->sc, !exp->revoked, STRESS_REVOKED,
		     "%s: get succeeded while revoked", exp->name);
	if (!stress_check(t->sc, !IS_ERR_OR_NULL(mem), STRESS_ERRNO,
			  "%s: get succeeded without a description", exp->name))
		return;
	stress_check(t->sc, stress_memory_is(exp, mem, exp->gen), STRESS_STALE,
		     "%s: got a description that is not of generation %lu",
		     exp->name, exp->gen);
	link->mem[link->nr_mem] = mem;
	link->mem_gen[link->nr_mem] = exp->gen;
	link->nr_mem++;
}

/* A move since would have taken what the importer holds. */
static void stress_check_held(struct stress_thread *t)
{
	struct stress_link *link = &t->link;
	struct stress_exporter *exp = link->exp;
	unsigned int i;

	for (i = 0; i < link->nr_mem; i++)
		stress_check(t->sc, link->mem_gen[i] == exp->gen &&
			     stress_memory_is(exp, link->mem[i], exp->gen),
			     STRESS_STALE,
			     "%s: holds a description of generation %lu at %lu",
			     exp->name, link->mem_gen[i], exp->gen);
	if (link->sgt)
		stress_check(t->sc, link->sgt_gen == exp->gen, STRESS_STALE,
			     "%s: holds a table of generation %lu at %lu",
			     exp->name, link->sgt_gen, exp->gen);
	stress_check(t->sc, !exp->revoked || (!link->nr_mem && !link->sgt),
		     STRESS_STALE, "%s: holds memory while revoked", exp->name);
}

static void stress_put(struct stress_thread *t, unsigned int i)
{
	struct stress_link *link = &t->link;

	stress_check_held(t);
	dma_buf_put_memory(link->attach, link->mem[i]);
	link->nr_mem--;
	link->mem[i] = link->mem[link->nr_mem];
	link->mem_gen[i] = link->mem_gen[link->nr_mem];
	stress_op(t, STRESS_PUT);
}

static void stress_map_table(struct stress_thread *t)
{
	struct stress_link *link = &t->link;
	struct stress_exporter *exp = link->exp;
	bool p2p = stress_gen_p2p(exp, exp->gen);
	struct sg_table *sgt;

	sgt = dma_buf_map_attachment(link->attach, STRESS_DIR);
	stress_op(t, STRESS_MAP);
	if (IS_ERR(sgt)) {
		if (PTR_ERR(sgt) == -ENODEV) {
			t->n[STRESS_MAP_ENODEV]++;
			stress_check(t->sc, exp->revoked, STRESS_ERRNO,
				     "%s: map failed with -ENODEV, not revoked",
				     exp->name);
		} else if (PTR_ERR(sgt) == -EOPNOTSUPP) {
			t->n[STRESS_MAP_EOPNOTSUPP]++;
			stress_check(t->sc, p2p && !exp->revoked, STRESS_ERRNO,
				     "%s: map failed with -EOPNOTSUPP for %s",
				     exp->name, exp->revoked ? "revoked memory" :
				     "CPU memory");
		} else {
			stress_check(t->sc, false, STRESS_ERRNO,
				     "%s: map failed: %pe", exp->name, sgt);
		}
		return;
	}
	t->n[STRESS_MAPPED]++;
	stress_check(t->sc, !exp->revoked, STRESS_REVOKED,
		     "%s: map succeeded while revoked", exp->name);
	stress_check(t->sc, !p2p, STRESS_ERRNO,
		     "%s: mapped a description with CPU and P2P chunks",
		     exp->name);
	stress_check(t->sc, p2p || stress_table_is(exp, sgt, exp->gen),
		     STRESS_STALE, "%s: table is not of generation %lu",
		     exp->name, exp->gen);
	link->sgt = sgt;
	link->sgt_gen = exp->gen;
}

static void stress_unmap_table(struct stress_thread *t)
{
	struct stress_link *link = &t->link;

	stress_check_held(t);
	dma_buf_unmap_attachment(link->attach, link->sgt, STRESS_DIR);
	link->sgt = NULL;
	stress_op(t, STRESS_UNMAP);
}

static void stress_attach(struct stress_thread *t)
{
	struct stress_case *sc = t->sc;
	struct stress_link *link = &t->link;
	struct stress_exporter *exp = sc->exp[get_random_u32_below(sc->nr_exp)];
	struct dma_buf_attachment *attach;

	*link = (struct stress_link){ .exp = exp };
	attach = dma_buf_dynamic_attach(exp->dmabuf, sc->dev,
					&stress_importer_ops, link);
	stress_op(t, STRESS_ATTACH);
	if (stress_check(sc, !IS_ERR(attach), STRESS_SETUP,
			 "%s: attach failed: %pe", exp->name, attach))
		link->attach = attach;
}

static void stress_detach(struct stress_thread *t)
{
	struct stress_link *link = &t->link;
	struct stress_exporter *exp = link->exp;

	/* Nothing may outlive the attachment: give everything back first. */
	dma_resv_lock(exp->dmabuf->resv, NULL);
	while (link->nr_mem)
		stress_put(t, link->nr_mem - 1);
	if (link->sgt)
		stress_unmap_table(t);
	stress_check_tracking(t);
	link->detaching = true;
	dma_resv_unlock(exp->dmabuf->resv);

	dma_buf_detach(exp->dmabuf, link->attach);
	link->attach = NULL;
	stress_op(t, STRESS_DETACH);

	/* Off the buffer's list: nothing is owed or received any more. */
	stress_check(t->sc, link->received == link->owed, STRESS_INVALIDATE,
		     "%s: attachment invalidated %lu times by %lu revokes and moves",
		     exp->name, link->received, link->owed);
	t->n[STRESS_INVALIDATED] += link->received;
	t->n[STRESS_INVALIDATED_PUT] += link->invalidated_put;
	t->n[STRESS_INVALIDATED_UNMAP] += link->invalidated_unmap;
}

static void stress_importer_step(struct stress_thread *t)
{
	struct stress_link *link = &t->link;
	struct dma_resv *resv;
	u32 r;

	if (!link->attach) {
		stress_attach(t);
		return;
	}
	r = get_random_u32_below(32);
	if (!r) {
		stress_detach(t);
		return;
	}

	resv = link->exp->dmabuf->resv;
	dma_resv_lock(resv, NULL);
	if (r < 18) {
		/* Mostly get, put when full; sometimes put, get when empty. */
		if (r < 12 ? link->nr_mem < STRESS_HOLD : !link->nr_mem)
			stress_get(t);
		else
			stress_put(t, r % link->nr_mem);
	} else if (r < 28) {
		if (link->sgt)
			stress_unmap_table(t);
		else
			stress_map_table(t);
	} else {
		stress_check_held(t);
		stress_op(t, STRESS_VERIFY);
	}
	stress_check_tracking(t);
	dma_resv_unlock(resv);
}

static int stress_importer(void *data)
{
	struct stress_thread *t = data;

	while (!stress_stopped(t->sc)) {
		stress_importer_step(t);
		cond_resched();
	}
	if (t->link.attach)
		stress_detach(t);
	kthread_complete_and_exit(&t->done, 0);
}

/* The cases. */

static void stress_free_block(void *block)
{
	__free_pages(block, STRESS_BLOCK_ORDER);
}

static void stress_dma_buf_put(void *dmabuf)
{
	dma_buf_put(dmabuf);
	/* In a kthread the release is deferred: the block must outlive it. */
	flush_delayed_fput();
}

static void stress_export(struct kunit *test, struct stress_case *sc,
			  enum dma_buf_memory_model model)
{
	DEFINE_DMA_BUF_EXPORT_INFO(info);
	struct stress_exporter *exp;
	struct page *block;
	int ret;

	exp = kunit_kzalloc(test, sizeof(*exp), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, exp);
	block = alloc_pages(GFP_KERNEL, STRESS_BLOCK_ORDER);
	KUNIT_ASSERT_NOT_NULL(test, block);
	ret = kunit_add_action_or_reset(test, stress_free_block, block);
	KUNIT_ASSERT_EQ(test, ret, 0);

	exp->sc = sc;
	exp->model = model;
	exp->name = stress_model_names[model];
	exp->block = page_to_phys(block);
	atomic_long_set(&exp->nr_attach, 0);
	atomic_long_set(&exp->nr_detach, 0);
	exp->shared = stress_build_shared(exp, 0);
	KUNIT_ASSERT_NOT_NULL(test, exp->shared);

	info.ops = &stress_exporter_ops;
	info.size = STRESS_SIZE;
	info.flags = O_RDWR;
	info.priv = exp;
	info.memory_model = model;
	exp->dmabuf = dma_buf_export(&info);
	if (IS_ERR(exp->dmabuf))
		dma_buf_memory_free(exp->shared);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, exp->dmabuf);
	ret = kunit_add_action_or_reset(test, stress_dma_buf_put, exp->dmabuf);
	KUNIT_ASSERT_EQ(test, ret, 0);
	sc->exp[sc->nr_exp++] = exp;
}

static bool stress_start(struct stress_case *sc, int (*fn)(void *),
			 struct stress_exporter *exp)
{
	struct stress_thread *t = &sc->thread[sc->nr_threads];
	struct task_struct *task;

	if (WARN_ON(sc->nr_threads == STRESS_MAX_THREADS))
		return false;
	t->sc = sc;
	t->exp = exp;
	init_completion(&t->done);
	task = kthread_run(fn, t, "dmabuf-stress/%u", sc->nr_threads);
	if (IS_ERR(task))
		return false;
	sc->nr_threads++;
	return true;
}

static void stress_report(struct kunit *test, const unsigned long *n,
			  unsigned long total, s64 ms)
{
	char line[384];
	size_t len = 0;
	unsigned int i;

	kunit_info(test, "%lu operations in %lld ms: %llu per second\n", total,
		   ms, div64_u64((u64)total * MSEC_PER_SEC, max_t(s64, ms, 1)));
	for (i = 0; i < STRESS_NR_COUNTS; i++)
		len += scnprintf(line + len, sizeof(line) - len, " %s=%lu",
				 stress_count_names[i], n[i]);
	kunit_info(test, "%s\n", line + 1);
}

/* Check rule 5 and that the case did what it is about. */
static void stress_expect_balance(struct kunit *test, struct stress_case *sc,
				  const unsigned long *n)
{
	unsigned long got = 0, put = 0, mapped = 0, unmapped = 0, events = 0;
	long attached = 0, detached = 0;
	unsigned int i;

	for (i = 0; i < sc->nr_exp; i++) {
		struct stress_exporter *exp = sc->exp[i];

		KUNIT_EXPECT_EQ_MSG(test, exp->nr_get, exp->nr_put,
				    "%s: gets and puts", exp->name);
		KUNIT_EXPECT_EQ_MSG(test, exp->nr_map, exp->nr_unmap,
				    "%s: maps and unmaps", exp->name);
		KUNIT_EXPECT_EQ_MSG(test, atomic_long_read(&exp->nr_attach),
				    atomic_long_read(&exp->nr_detach),
				    "%s: attaches and detaches", exp->name);
		KUNIT_EXPECT_GT_MSG(test, exp->nr_get, 0,
				    "%s: never got", exp->name);
		KUNIT_EXPECT_GT_MSG(test, exp->nr_map, 0,
				    "%s: never mapped", exp->name);
		if (exp->model == DMA_BUF_MODEL_REVOCABLE)
			KUNIT_EXPECT_GT_MSG(test, exp->nr_revoke, 0,
					    "%s: never revoked", exp->name);
		if (exp->model == DMA_BUF_MODEL_DYNAMIC)
			KUNIT_EXPECT_GT_MSG(test, exp->nr_move, 0,
					    "%s: never moved", exp->name);
		got += exp->nr_get;
		put += exp->nr_put;
		mapped += exp->nr_map;
		unmapped += exp->nr_unmap;
		events += exp->events;
		attached += atomic_long_read(&exp->nr_attach);
		detached += atomic_long_read(&exp->nr_detach);
	}
	KUNIT_EXPECT_EQ_MSG(test, n[STRESS_GOT], got,
			    "descriptions importers got and exporters served");
	KUNIT_EXPECT_EQ_MSG(test, n[STRESS_PUT] + n[STRESS_INVALIDATED_PUT], put,
			    "descriptions importers put and exporters took back");
	KUNIT_EXPECT_EQ_MSG(test, n[STRESS_MAPPED], mapped,
			    "tables importers mapped and exporters mapped");
	KUNIT_EXPECT_EQ_MSG(test, n[STRESS_UNMAP] + n[STRESS_INVALIDATED_UNMAP],
			    unmapped, "tables importers and exporters unmapped");
	KUNIT_EXPECT_EQ_MSG(test, n[STRESS_ATTACH], attached,
			    "attachments importers made and exporters saw");
	KUNIT_EXPECT_EQ_MSG(test, n[STRESS_DETACH], detached,
			    "detaches importers made and exporters saw");
	if (events)
		KUNIT_EXPECT_GT_MSG(test, n[STRESS_INVALIDATED], 0,
				    "%lu revokes and moves invalidated nobody",
				    events);
	else
		KUNIT_EXPECT_EQ(test, n[STRESS_INVALIDATED], 0);
}

static void stress_run(struct kunit *test, unsigned int models,
		       unsigned int nr_importers)
{
	unsigned long n[STRESS_NR_COUNTS] = {};
	unsigned long deadline, total = 0;
	enum dma_buf_memory_model model;
	struct stress_case *sc;
	bool started = true;
	unsigned int i, j;
	ktime_t start;
	s64 ms;

	sc = kunit_kzalloc(test, sizeof(*sc), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, sc);
	sc->dev = test->priv;
	atomic_long_set(&sc->ops, 0);
	for (i = 0; i < STRESS_NR_RULES; i++)
		atomic_set(&sc->broken[i], 0);
	for (model = DMA_BUF_MODEL_PINNED; model < DMA_BUF_MODEL_COUNT; model++)
		if (models & BIT(model))
			stress_export(test, sc, model);

	/* No assertion from here on, until every thread is done. */
	start = ktime_get();
	deadline = jiffies + stress_seconds * HZ;
	for (i = 0; i < nr_importers && started; i++)
		started = stress_start(sc, stress_importer, NULL);
	for (i = 0; i < sc->nr_exp && started; i++) {
		if (sc->exp[i]->model == DMA_BUF_MODEL_REVOCABLE)
			started = stress_start(sc, stress_revoker, sc->exp[i]);
		else if (sc->exp[i]->model == DMA_BUF_MODEL_DYNAMIC)
			started = stress_start(sc, stress_mover, sc->exp[i]);
	}
	while (started && time_before(jiffies, deadline) &&
	       atomic_long_read(&sc->ops) < stress_ops)
		msleep(50);
	WRITE_ONCE(sc->stop, true);
	for (i = 0; i < sc->nr_threads; i++)
		wait_for_completion(&sc->thread[i].done);
	ms = ktime_ms_delta(ktime_get(), start);
	KUNIT_ASSERT_TRUE_MSG(test, started, "cannot start a thread");

	for (i = 0; i < sc->nr_threads; i++)
		for (j = 0; j < STRESS_NR_COUNTS; j++)
			n[j] += sc->thread[i].n[j];
	for (j = 0; j < STRESS_NR_OPS; j++)
		total += n[j];
	atomic_long_add(total, &stress_total_ops);
	stress_report(test, n, total, ms);

	for (i = 0; i < STRESS_NR_RULES; i++)
		KUNIT_EXPECT_EQ_MSG(test, atomic_read(&sc->broken[i]), 0,
				    "broken: %s", stress_rule_names[i]);
	KUNIT_EXPECT_GE_MSG(test, total, stress_ops,
			    "stopped after %lld ms: hang or livelock?", ms);
	stress_expect_balance(test, sc, n);
}

/* Get/put, attach/detach, map/unmap, shared and built descriptions. */
static void stress_pinned(struct kunit *test)
{
	stress_run(test, BIT(DMA_BUF_MODEL_PINNED), 4);
}

/* The same, while a revoker revokes and restores the buffer. */
static void stress_revocable(struct kunit *test)
{
	stress_run(test, BIT(DMA_BUF_MODEL_REVOCABLE), 3);
}

/* The same, while a mover moves the buffer. */
static void stress_dynamic(struct kunit *test)
{
	stress_run(test, BIT(DMA_BUF_MODEL_DYNAMIC), 3);
}

/* Importers attach to any of three buffers, one of each model. */
static void stress_mixed(struct kunit *test)
{
	stress_run(test, BIT(DMA_BUF_MODEL_PINNED) |
		   BIT(DMA_BUF_MODEL_REVOCABLE) | BIT(DMA_BUF_MODEL_DYNAMIC), 4);
}

static int stress_init(struct kunit *test)
{
	struct device *dev = kunit_device_register(test, "dmabuf-stress");
	int ret;

	if (IS_ERR(dev))
		return PTR_ERR(dev);
	/* dma-direct maps any page for it, without bouncing. */
	ret = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(64));
	if (ret)
		return ret;
	test->priv = dev;
	return 0;
}

static void stress_suite_exit(struct kunit_suite *suite)
{
	pr_info("%ld operations in all cases\n",
		atomic_long_read(&stress_total_ops));
}

static struct kunit_case stress_cases[] = {
	KUNIT_CASE_SLOW(stress_pinned),
	KUNIT_CASE_SLOW(stress_revocable),
	KUNIT_CASE_SLOW(stress_dynamic),
	KUNIT_CASE_SLOW(stress_mixed),
	{}
};

static struct kunit_suite stress_suite = {
	.name = "dma_buf_memory_stress",
	.init = stress_init,
	.suite_exit = stress_suite_exit,
	.test_cases = stress_cases,
};

kunit_test_suite(stress_suite);

MODULE_DESCRIPTION("Stress test of dma_buf_get_memory() under concurrent revoke, move and import");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS("DMA_BUF");

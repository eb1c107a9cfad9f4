/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * uAPI of the dma-buf import sample, samples/c/dmabuf_import_sample.c:
 * describe the physical memory of a dma-buf as an importer sees it through
 * dma_buf_get_memory().
 */
#ifndef _DMABUF_IMPORT_SAMPLE_H
#define _DMABUF_IMPORT_SAMPLE_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* How many ranges DMABUF_IMPORT_SAMPLE_DESCRIBE copies out. */
#define DMABUF_IMPORT_SAMPLE_RANGES	4

/**
 * struct dmabuf_import_sample_range - one physical range
 * @paddr: CPU physical address, page aligned
 * @len: length in bytes, page aligned
 */
struct dmabuf_import_sample_range {
	__u64 paddr;
	__u64 len;
};

/**
 * struct dmabuf_import_sample_describe - argument of DMABUF_IMPORT_SAMPLE_DESCRIBE
 * @fd: in: the dma-buf
 * @model: out: its memory model, an enum dma_buf_memory_model
 *	(1 pinned, 2 revocable, 3 dynamic)
 * @nr_chunks: out: number of chunks
 * @nr_ranges: out: number of ranges in all chunks
 * @size: out: total bytes of all ranges
 * @ranges: out: the first DMABUF_IMPORT_SAMPLE_RANGES ranges, in buffer
 *	order across chunks; the entries past @nr_ranges are zero
 */
struct dmabuf_import_sample_describe {
	__s32 fd;
	__u32 model;
	__u32 nr_chunks;
	__u32 nr_ranges;
	__u64 size;
	struct dmabuf_import_sample_range ranges[DMABUF_IMPORT_SAMPLE_RANGES];
};

/*
 * Attach to the dma-buf, get its memory, fill in the out fields of the
 * argument, put the memory and detach. Errors are those of the dma-buf
 * calls, unchanged: EBADF or EINVAL if @fd is not a dma-buf, EOPNOTSUPP if
 * the exporter does not describe its memory or holds private memory,
 * ENODEV if the exporter revoked the buffer, EINVAL if the exporter's
 * description was invalid; and EPERM without CAP_SYS_ADMIN, EINTR if a
 * signal interrupted the wait for the reservation lock, EFAULT.
 *
 * 0xDB is not a registered ioctl number: this is a sample.
 */
#define DMABUF_IMPORT_SAMPLE_DESCRIBE \
	_IOWR(0xDB, 0x00, struct dmabuf_import_sample_describe)

#endif /* _DMABUF_IMPORT_SAMPLE_H */

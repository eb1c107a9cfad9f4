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

/* DMABUF_IMPORT_SAMPLE_MAP for a PCI device, as a peer-to-peer importer. */
#define DMABUF_IMPORT_SAMPLE_MAP_PCI	0x1

/**
 * struct dmabuf_import_sample_map - argument of DMABUF_IMPORT_SAMPLE_MAP
 * @fd: in: the dma-buf
 * @flags: in: 0 or DMABUF_IMPORT_SAMPLE_MAP_PCI
 * @pci: in: with DMABUF_IMPORT_SAMPLE_MAP_PCI, the PCI device to map for:
 *	domain << 16 | bus << 8 | devfn
 * @nents: out: entries of the table's CPU list, 0 if it has none (PCI MMIO)
 * @dma_nents: out: DMA segments of the table
 * @reserved: must be zero
 * @dma_len: out: total bytes of the DMA segments
 * @dma_addr: out: DMA address of the first segment
 * @ranges: out: the first DMABUF_IMPORT_SAMPLE_RANGES entries of the CPU
 *	list as physical ranges; the entries past @nents are zero
 */
struct dmabuf_import_sample_map {
	__s32 fd;
	__u32 flags;
	__u32 pci;
	__u32 nents;
	__u32 dma_nents;
	__u32 reserved;
	__u64 dma_len;
	__u64 dma_addr;
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

/*
 * The other way to import a dma-buf, for comparison: attach as an importer
 * that declares no memory model, map the buffer with
 * dma_buf_map_attachment() as most importers do, fill in the out fields
 * from the DMA-mapped sg_table, unmap and detach. Without flags the sample
 * attaches its platform device as a static importer; with
 * DMABUF_IMPORT_SAMPLE_MAP_PCI it attaches the PCI device @pci as a dynamic
 * importer that allows peer-to-peer, so that PCI MMIO is mapped for that
 * device's DMA. Exporters that describe their memory with get_memory can
 * serve this from the same description (dma_buf_memory_map(),
 * Exporter::MAP_DMA_BUF in Rust). Errors are those of the dma-buf calls:
 * EOPNOTSUPP if the exporter does not map for such importers, ENODEV if it
 * revoked the buffer, EINVAL if the device cannot reach the memory; ENODEV
 * if there is no PCI device @pci, EINVAL for unknown flags or a non-zero
 * @reserved; and EPERM, EFAULT as above.
 */
#define DMABUF_IMPORT_SAMPLE_MAP \
	_IOWR(0xDB, 0x01, struct dmabuf_import_sample_map)

#endif /* _DMABUF_IMPORT_SAMPLE_H */

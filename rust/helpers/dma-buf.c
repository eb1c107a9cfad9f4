// SPDX-License-Identifier: GPL-2.0

#include <linux/dma-buf.h>

__rust_helper void rust_helper_get_dma_buf(struct dma_buf *dmabuf)
{
	get_dma_buf(dmabuf);
}

/* The page of a CPU chunk's physical address, or NULL if it has none. */
__rust_helper struct page *rust_helper_dma_buf_phys_to_page(phys_addr_t phys)
{
	return pfn_valid(PHYS_PFN(phys)) ? phys_to_page(phys) : NULL;
}

// SPDX-License-Identifier: GPL-2.0

#include <linux/dma-buf.h>
#include <linux/mm.h>

__rust_helper void rust_helper_get_dma_buf(struct dma_buf *dmabuf)
{
	get_dma_buf(dmabuf);
}

/* Used by the page view of kernel::dma_buf::Chunk. */
__rust_helper int rust_helper_pfn_valid(unsigned long pfn)
{
	return pfn_valid(pfn);
}

__rust_helper struct page *rust_helper_pfn_to_page(unsigned long pfn)
{
	return pfn_to_page(pfn);
}

__rust_helper bool rust_helper_is_zone_device_page(const struct page *page)
{
	return is_zone_device_page(page);
}

__rust_helper bool rust_helper_PageTail(const struct page *page)
{
	return PageTail(page);
}

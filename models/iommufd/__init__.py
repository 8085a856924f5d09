"""The iommufd layer of Linux (drivers/iommu/iommufd/, include/uapi/linux/iommufd.h) as pure functions."""

//! Finding block devices by UUID=, LABEL=, PARTUUID= or path under /sys and /dev, waiting for several at once.

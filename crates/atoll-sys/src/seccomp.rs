//! seccomp(2): install a filter, and the SECCOMP_IOCTL_NOTIF_* ioctls (owned by the seccomp work).

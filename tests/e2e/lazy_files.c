// A lazily fetched channel, as SageMaker's FastFile input mode presents one (a FUSE mount streaming S3
// objects), for tests/e2e/fastfile.sh. LD_PRELOADed into dsmil_train, it serves the files under
// DSMIL_LAZY_DIR, which are placeholders of the right size with no data (sparse, all zeros), from the
// files of the same name under DSMIL_LAZY_SOURCE, but only through read(2) and pread(2), and the way a slow
// network file system does: at most DSMIL_LAZY_PIECE bytes per call (sizes vary: short reads), a delay of
// DSMIL_LAZY_DELAY_US before each, and EINTR every DSMIL_LAZY_EINTR-th call. A reader that maps the file,
// reads it through another path, or takes one short read for the end of the file sees zeros and fails.
// DSMIL_LAZY_FLOCK_ERRNO makes flock(2) on those files fail with that errno (a file system without locks);
// DSMIL_LAZY_STATS names a file each process appends its counts to at exit.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

enum { kMaxFds = 65536 };

// The backing file's descriptor + 1 for each placeholder descriptor (0: not a lazy file).
static _Atomic int backing[kMaxFds];
static char lazy_dir[PATH_MAX];
static char source_dir[PATH_MAX];
static size_t lazy_len;
static long piece = 4096;
static long delay_us = 0;
static long eintr_every = 0;
static int flock_errno = 0;
static atomic_long n_opens, n_reads, n_short, n_bytes, n_eintr, n_flocks, n_background, n_mmaps;

static int (*real_open)(const char*, int, ...);
static int (*real_openat)(int, const char*, int, ...);
static int (*real_close)(int);
static ssize_t (*real_read)(int, void*, size_t);
static ssize_t (*real_pread)(int, void*, size_t, off_t);
static int (*real_flock)(int, int);
static void* (*real_mmap)(void*, size_t, int, int, int, off_t);

static long env_long(const char* name, long fallback) {
  const char* v = getenv(name);
  return v && *v ? strtol(v, NULL, 10) : fallback;
}

// libc's functions, looked up on first use: other libraries' constructors may open files before ours runs.
static void resolve(void) {
  if (real_mmap) return;
  real_open = dlsym(RTLD_NEXT, "open");
  real_openat = dlsym(RTLD_NEXT, "openat");
  real_close = dlsym(RTLD_NEXT, "close");
  real_read = dlsym(RTLD_NEXT, "read");
  real_pread = dlsym(RTLD_NEXT, "pread");
  real_flock = dlsym(RTLD_NEXT, "flock");
  real_mmap = dlsym(RTLD_NEXT, "mmap");
}

__attribute__((constructor)) static void lazy_init(void) {
  resolve();
  const char* dir = getenv("DSMIL_LAZY_DIR");
  const char* source = getenv("DSMIL_LAZY_SOURCE");
  if (dir && source && realpath(dir, lazy_dir) && realpath(source, source_dir)) lazy_len = strlen(lazy_dir);
  piece = env_long("DSMIL_LAZY_PIECE", piece);
  if (piece < 1) piece = 1;
  delay_us = env_long("DSMIL_LAZY_DELAY_US", 0);
  eintr_every = env_long("DSMIL_LAZY_EINTR", 0);
  flock_errno = (int)env_long("DSMIL_LAZY_FLOCK_ERRNO", 0);
}

__attribute__((destructor)) static void lazy_report(void) {
  const char* stats = getenv("DSMIL_LAZY_STATS");
  if (!stats || !lazy_len) return;
  char line[512];
  int n = snprintf(line, sizeof line,
                   "pid=%d opens=%ld reads=%ld short=%ld bytes=%ld eintr=%ld flocks=%ld background=%ld mmaps=%ld\n",
                   (int)getpid(), atomic_load(&n_opens), atomic_load(&n_reads), atomic_load(&n_short),
                   atomic_load(&n_bytes), atomic_load(&n_eintr), atomic_load(&n_flocks), atomic_load(&n_background),
                   atomic_load(&n_mmaps));
  int fd = real_open(stats, O_WRONLY | O_CREAT | O_APPEND, 0644);
  if (fd < 0) return;
  if (write(fd, line, (size_t)n) != n) perror("lazy_files: stats");
  real_close(fd);
}

// After a successful open of `path` as `fd`: a placeholder under DSMIL_LAZY_DIR gets its backing file.
static int track(int fd, const char* path) {
  char full[PATH_MAX], src[PATH_MAX];
  if (fd < 0 || fd >= kMaxFds || !lazy_len || !realpath(path, full)) return fd;
  if (strncmp(full, lazy_dir, lazy_len) != 0 || full[lazy_len] != '/') return fd;
  snprintf(src, sizeof src, "%s%s", source_dir, full + lazy_len);
  int b = real_open(src, O_RDONLY | O_CLOEXEC);
  if (b < 0) return fd;  // not a file of the channel's (a directory, say): served as it is
  atomic_store(&backing[fd], b + 1);
  atomic_fetch_add(&n_opens, 1);
  return fd;
}

static int lazy_fd(int fd) {
  return fd >= 0 && fd < kMaxFds ? atomic_load(&backing[fd]) - 1 : -1;
}

// One slow, partial read of the backing file at `offset`.
static ssize_t fetch(int b, void* buf, size_t count, off_t offset) {
  long call = atomic_fetch_add(&n_reads, 1) + 1;
  if (syscall(SYS_gettid) != getpid()) atomic_fetch_add(&n_background, 1);
  if (delay_us > 0) {
    struct timespec t = {delay_us / 1000000, (delay_us % 1000000) * 1000};
    nanosleep(&t, NULL);
  }
  if (eintr_every > 0 && call % eintr_every == 0) {
    atomic_fetch_add(&n_eintr, 1);
    errno = EINTR;
    return -1;
  }
  // Sizes from piece / 3 to piece, varying call to call.
  size_t limit = (size_t)(piece - (call * 7919) % (piece - piece / 3));
  if (limit < 1) limit = 1;
  if (count > limit) {
    count = limit;
    atomic_fetch_add(&n_short, 1);
  }
  ssize_t n = real_pread(b, buf, count, offset);
  if (n > 0) atomic_fetch_add(&n_bytes, n);
  return n;
}

// Whether open/openat with these flags were given a mode argument.
static int has_mode(int flags) {
  return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE;
}

int open(const char* path, int flags, ...) {
  resolve();
  va_list ap;
  va_start(ap, flags);
  mode_t mode = has_mode(flags) ? va_arg(ap, mode_t) : 0;
  va_end(ap);
  return track(real_open(path, flags, mode), path);
}
int open64(const char* path, int flags, ...) __attribute__((alias("open")));

int openat(int dirfd, const char* path, int flags, ...) {
  resolve();
  va_list ap;
  va_start(ap, flags);
  mode_t mode = has_mode(flags) ? va_arg(ap, mode_t) : 0;
  va_end(ap);
  int fd = real_openat(dirfd, path, flags, mode);
  return path[0] == '/' || dirfd == AT_FDCWD ? track(fd, path) : fd;
}
int openat64(int dirfd, const char* path, int flags, ...) __attribute__((alias("openat")));

int close(int fd) {
  resolve();
  if (fd >= 0 && fd < kMaxFds) {
    int b = atomic_exchange(&backing[fd], 0) - 1;
    if (b >= 0) real_close(b);
  }
  return real_close(fd);
}

ssize_t read(int fd, void* buf, size_t count) {
  resolve();
  int b = lazy_fd(fd);
  if (b < 0) return real_read(fd, buf, count);
  // The placeholder's descriptor keeps the file position (lseek works on it as on the real file).
  off_t at = lseek(fd, 0, SEEK_CUR);
  if (at < 0) return -1;
  ssize_t n = fetch(b, buf, count, at);
  if (n > 0) lseek(fd, at + n, SEEK_SET);
  return n;
}

ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
  resolve();
  int b = lazy_fd(fd);
  return b < 0 ? real_pread(fd, buf, count, offset) : fetch(b, buf, count, offset);
}
ssize_t pread64(int fd, void* buf, size_t count, off_t offset) __attribute__((alias("pread")));

int flock(int fd, int operation) {
  resolve();
  if (lazy_fd(fd) >= 0) {
    atomic_fetch_add(&n_flocks, 1);
    if (flock_errno) {
      errno = flock_errno;
      return -1;
    }
  }
  return real_flock(fd, operation);
}

void* mmap(void* addr, size_t length, int prot, int flags, int fd, off_t offset) {
  resolve();
  if (lazy_fd(fd) >= 0) atomic_fetch_add(&n_mmaps, 1);
  return real_mmap(addr, length, prot, flags, fd, offset);
}
void* mmap64(void* addr, size_t length, int prot, int flags, int fd, off_t offset) __attribute__((alias("mmap")));

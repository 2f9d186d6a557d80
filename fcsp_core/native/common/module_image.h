/* What a module image (PTX text, cubin ELF, fatbin container) costs the device when the driver loads it: the
 * storage of its globals (`__device__` variables: PTX `.global` declarations, a cubin's .nv.global and
 * .nv.global.init sections). One reader for the interposer (which admits that much before the driver loads the
 * image) and the simulated driver (which allocates it at load, as the real one does), so the two cannot drift.
 *
 * Images come from the application; the reader never reads past the sizes the image's own headers declare (a
 * PTX text: its terminating NUL) and never past FCSP_IMAGE_MAX bytes. */
#ifndef FCSP_MODULE_IMAGE_H
#define FCSP_MODULE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#define FCSP_IMAGE_MAX (1ULL << 32)

enum fcsp_image_kind { FCSP_IMAGE_UNKNOWN = 0, FCSP_IMAGE_PTX, FCSP_IMAGE_ELF, FCSP_IMAGE_FATBIN };

struct fcsp_image_info {
    enum fcsp_image_kind kind;
    int sized; /* 1: globals is what the driver allocates; 0: an entry could not be read (compressed) */
    uint64_t globals; /* bytes of device memory the globals take (of the largest readable entry for a fatbin) */
    uint64_t unread_bytes; /* fatbin: the largest uncompressed size its compressed entries declare */
    /* the first entry the simulated driver can take kernels from (a fatbin's first readable PTX or ELF) */
    const char *ptx;
    size_t ptx_len;
    const unsigned char *elf;
    size_t elf_len;
};

/* Reads image; len: its size when known (a file's), else 0 (the driver's own rule: PTX ends at its NUL, an ELF
 * or fatbin at what its headers declare). A fatbin may be passed inside its wrapper (__fatBinC_Wrapper_t, as
 * cuModuleLoadFatBinary takes it). Returns 0, or -1 when image is none of the three (info->kind UNKNOWN). */
int fcsp_image_inspect(const void *image, size_t len, struct fcsp_image_info *info);

/* PTX text of len bytes: the bytes its `.global` declarations take, aligned as declared. */
uint64_t fcsp_ptx_globals(const char *ptx, size_t len);

/* Calls fn for each kernel of a cubin ELF (its .text.NAME sections); returns how many. */
int fcsp_elf_kernels(const unsigned char *elf, size_t len, void (*fn)(const char *name, size_t n, void *arg),
                     void *arg);

#endif

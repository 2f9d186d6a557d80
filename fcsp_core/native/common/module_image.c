/* Sizing a module image's globals (see module_image.h). Formats:
 *   PTX: text; each `.global` declaration (not `.extern`) takes its element size x vector width x array
 *        dimensions, at its `.align` (default: its element size).
 *   ELF: a cubin; its .nv.global (NOBITS: zero-initialised) and .nv.global.init sections, at their alignment.
 *   fatbin: a container (magic 0xBA55ED50, little-endian; or its wrapper, magic 0x466243B1) of PTX and ELF entries, one per target; the driver loads one of them,
 *        so the largest readable entry counts. Compressed entries (nvcc compresses by default for large images)
 *        cannot be read here: the image is then not sized (the interposer measures what the load took). */
#include "module_image.h"

#include <ctype.h>
#include <elf.h>
#include <string.h>

#define FATBIN_KIND_PTX 0x1
#define FATBIN_KIND_ELF 0x2
#define FATBIN_KIND_ELF_ALT 0x10
#define FATBIN_FLAG_COMPRESSED_LZ4 0x2000ULL
#define FATBIN_FLAG_COMPRESSED_ZSTD 0x8000ULL
#define SATURATE (UINT64_MAX / 4)

static uint64_t sat_add(uint64_t a, uint64_t b)
{
    return a > SATURATE - (b > SATURATE ? SATURATE : b) ? SATURATE : a + b;
}

static uint64_t sat_mul(uint64_t a, uint64_t b)
{
    return a && b > SATURATE / a ? SATURATE : a * b;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
    if (a <= 1 || a > (1ULL << 32) || (a & (a - 1)) != 0)
        return v;
    return v > SATURATE ? SATURATE : (v + a - 1) & ~(a - 1);
}

static uint64_t rd64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint32_t rd32(const unsigned char *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static uint16_t rd16(const unsigned char *p)
{
    uint16_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* ---- PTX ---- */

struct ptx_cursor {
    const char *p, *end;
};

static int ptx_ident(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '$' || c == '.' || c == '%';
}

/* Skips blanks and comments. */
static void ptx_skip(struct ptx_cursor *c)
{
    while (c->p < c->end) {
        if (isspace((unsigned char)*c->p)) {
            c->p++;
        } else if (c->end - c->p >= 2 && c->p[0] == '/' && c->p[1] == '/') {
            while (c->p < c->end && *c->p != '\n')
                c->p++;
        } else if (c->end - c->p >= 2 && c->p[0] == '/' && c->p[1] == '*') {
            c->p += 2;
            while (c->end - c->p >= 2 && !(c->p[0] == '*' && c->p[1] == '/'))
                c->p++;
            c->p = c->end - c->p >= 2 ? c->p + 2 : c->end;
        } else {
            return;
        }
    }
}

static uint64_t ptx_number(struct ptx_cursor *c)
{
    ptx_skip(c);
    uint64_t v = 0;
    int base = 10;
    if (c->end - c->p >= 2 && c->p[0] == '0' && (c->p[1] == 'x' || c->p[1] == 'X')) {
        base = 16;
        c->p += 2;
    }
    for (; c->p < c->end && isxdigit((unsigned char)*c->p); c->p++) {
        int d = isdigit((unsigned char)*c->p) ? *c->p - '0' : (tolower((unsigned char)*c->p) - 'a' + 10);
        if (d >= base)
            break;
        v = sat_add(sat_mul(v, (uint64_t)base), (uint64_t)d);
    }
    if (c->p < c->end && (*c->p == 'U' || *c->p == 'u'))
        c->p++;
    return v;
}

static int tok_is(const char *t, size_t n, const char *s)
{
    return strlen(s) == n && memcmp(t, s, n) == 0;
}

/* Element size of a PTX fundamental type token (".u32"), 0 if t is not one. */
static uint64_t ptx_type_bytes(const char *t, size_t n)
{
    if (n < 3 || t[0] != '.' || strchr("bsuf", t[1]) == NULL)
        return 0;
    if (tok_is(t + 2, n - 2, "8"))
        return 1;
    if (tok_is(t + 2, n - 2, "16"))
        return 2;
    if (tok_is(t + 2, n - 2, "32"))
        return 4;
    if (tok_is(t + 2, n - 2, "64"))
        return 8;
    if (tok_is(t + 2, n - 2, "128"))
        return 16;
    return 0;
}

/* Skips an initializer (after '='): up to the ',' or ';' that ends it, braces balanced. */
static void ptx_skip_init(struct ptx_cursor *c)
{
    int depth = 0;
    for (; c->p < c->end; c->p++) {
        char ch = *c->p;
        if (ch == '{')
            depth++;
        else if (ch == '}')
            depth--;
        else if ((ch == ',' || ch == ';') && depth <= 0)
            return;
    }
}

/* One `.global` declaration from just after the keyword: the bytes its declarators take, added to *total. */
static void ptx_declaration(struct ptx_cursor *c, uint64_t *total)
{
    uint64_t align = 0, elem = 0, vec = 1;
    for (;;) {
        ptx_skip(c);
        if (c->p >= c->end || *c->p == ';' || *c->p == '{' || *c->p == '}')
            return;
        if (*c->p == ',') {
            c->p++;
            continue;
        }
        if (*c->p == '(') { /* .attribute(...) */
            while (c->p < c->end && *c->p != ')' && *c->p != ';')
                c->p++;
            if (c->p < c->end && *c->p == ')')
                c->p++;
            continue;
        }
        const char *t = c->p;
        while (c->p < c->end && ptx_ident(*c->p))
            c->p++;
        size_t n = (size_t)(c->p - t);
        if (n == 0) {
            c->p++; /* a character PTX does not put here: step over it */
            continue;
        }
        if (t[0] == '.') {
            if (tok_is(t, n, ".align"))
                align = ptx_number(c);
            else if (tok_is(t, n, ".v2") || tok_is(t, n, ".v4") || tok_is(t, n, ".v8"))
                vec = (uint64_t)(t[2] - '0');
            else if (ptx_type_bytes(t, n))
                elem = ptx_type_bytes(t, n);
            continue;
        }
        /* a declarator: NAME [dim]... [= initializer] */
        uint64_t count = 1;
        for (;;) {
            ptx_skip(c);
            if (c->p >= c->end || *c->p != '[')
                break;
            c->p++;
            ptx_skip(c);
            uint64_t dim = (c->p < c->end && *c->p == ']') ? 0 : ptx_number(c); /* [] : sized by its initializer */
            count = sat_mul(count, dim);
            while (c->p < c->end && *c->p != ']' && *c->p != ';')
                c->p++;
            if (c->p < c->end && *c->p == ']')
                c->p++;
        }
        uint64_t bytes = sat_mul(sat_mul(elem, vec), count);
        *total = sat_add(align_up(*total, align ? align : elem * vec), bytes);
        ptx_skip(c);
        if (c->p < c->end && *c->p == '=')
            ptx_skip_init(c);
    }
}

/* Whether the statement holding the keyword at kw (from the last ';', '{' or '}') says .extern. */
static int ptx_is_extern(const char *start, const char *kw)
{
    const char *s = kw;
    while (s > start && s[-1] != ';' && s[-1] != '{' && s[-1] != '}')
        s--;
    for (; s + 7 <= kw; s++)
        if (memcmp(s, ".extern", 7) == 0)
            return 1;
    return 0;
}

uint64_t fcsp_ptx_globals(const char *ptx, size_t len)
{
    uint64_t total = 0;
    struct ptx_cursor c = {ptx, ptx + len};
    while (c.p < c.end) {
        ptx_skip(&c);
        if (c.p >= c.end)
            break;
        const char *t = c.p;
        while (c.p < c.end && ptx_ident(*c.p))
            c.p++;
        if (c.p == t) {
            c.p++;
            continue;
        }
        if (tok_is(t, (size_t)(c.p - t), ".global") && !ptx_is_extern(ptx, t))
            ptx_declaration(&c, &total);
    }
    return total;
}

static size_t bounded_strlen(const char *s, size_t max)
{
    const char *z = memchr(s, '\0', max);
    return z ? (size_t)(z - s) : max;
}

/* ---- ELF (cubin) ---- */

struct elf_view {
    const unsigned char *img;
    uint64_t limit; /* bytes the image may be read up to */
    Elf64_Ehdr eh;
};

static int elf_open(const unsigned char *img, size_t len, struct elf_view *v)
{
    v->img = img;
    v->limit = len ? len : FCSP_IMAGE_MAX;
    /* byte by byte up to EI_VERSION: a short buffer (a string) stops at its NUL before anything past it is read */
    static const unsigned char ident[] = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3, ELFCLASS64, ELFDATA2LSB, EV_CURRENT};
    for (size_t i = 0; i < sizeof ident; i++)
        if (i >= v->limit || img[i] != ident[i])
            return -1;
    if (v->limit < sizeof v->eh)
        return -1;
    memcpy(&v->eh, img, sizeof v->eh);
    if (v->eh.e_shentsize != sizeof(Elf64_Shdr) || v->eh.e_shoff == 0 || v->eh.e_shoff > v->limit ||
        (uint64_t)v->eh.e_shnum * sizeof(Elf64_Shdr) > v->limit - v->eh.e_shoff || v->eh.e_shstrndx >= v->eh.e_shnum)
        return -1;
    return 0;
}

static Elf64_Shdr elf_section(const struct elf_view *v, unsigned i)
{
    Elf64_Shdr sh;
    memcpy(&sh, v->img + v->eh.e_shoff + (uint64_t)i * sizeof sh, sizeof sh);
    return sh;
}

/* The name of section sh, NULL if it lies outside the image. */
static const char *elf_name(const struct elf_view *v, const Elf64_Shdr *sh, size_t *n)
{
    Elf64_Shdr strs = elf_section(v, v->eh.e_shstrndx);
    if (strs.sh_offset > v->limit || strs.sh_size > v->limit - strs.sh_offset || sh->sh_name >= strs.sh_size)
        return NULL;
    const char *s = (const char *)v->img + strs.sh_offset + sh->sh_name;
    *n = bounded_strlen(s, strs.sh_size - sh->sh_name);
    return s;
}

static int elf_globals(const unsigned char *img, size_t len, uint64_t *out)
{
    struct elf_view v;
    if (elf_open(img, len, &v) != 0)
        return -1;
    uint64_t total = 0;
    for (unsigned i = 0; i < v.eh.e_shnum; i++) {
        Elf64_Shdr sh = elf_section(&v, i);
        size_t n;
        const char *name = elf_name(&v, &sh, &n);
        if (name && (tok_is(name, n, ".nv.global") || tok_is(name, n, ".nv.global.init")))
            total = sat_add(align_up(total, sh.sh_addralign), sh.sh_size);
    }
    *out = total;
    return 0;
}

int fcsp_elf_kernels(const unsigned char *elf, size_t len, void (*fn)(const char *name, size_t n, void *arg),
                     void *arg)
{
    struct elf_view v;
    if (elf_open(elf, len, &v) != 0)
        return 0;
    int count = 0;
    for (unsigned i = 0; i < v.eh.e_shnum; i++) {
        Elf64_Shdr sh = elf_section(&v, i);
        size_t n;
        const char *name = elf_name(&v, &sh, &n);
        if (name && n > 6 && memcmp(name, ".text.", 6) == 0) {
            if (fn)
                fn(name + 6, n - 6, arg);
            count++;
        }
    }
    return count;
}

/* ---- fatbin ---- */

static int fatbin_inspect(const unsigned char *img, size_t len, struct fcsp_image_info *info)
{
    uint64_t limit = len ? len : FCSP_IMAGE_MAX;
    if (limit < 16)
        return -1;
    uint64_t hsize = rd16(img + 6), body = rd64(img + 8);
    if (hsize < 16 || hsize > limit || body > limit - hsize)
        return -1;
    info->kind = FCSP_IMAGE_FATBIN;
    info->sized = 1;
    uint64_t off = hsize, end = hsize + body;
    while (end - off >= 64) {
        const unsigned char *e = img + off;
        uint32_t ehsize = rd32(e + 4);
        uint64_t payload = rd64(e + 8), flags = rd64(e + 40), unpacked = rd64(e + 56);
        uint16_t kind = rd16(e);
        if (ehsize < 64 || ehsize > end - off || payload > end - off - ehsize)
            break;
        const unsigned char *data = e + ehsize;
        if (flags & (FATBIN_FLAG_COMPRESSED_LZ4 | FATBIN_FLAG_COMPRESSED_ZSTD)) {
            info->sized = 0;
            if (unpacked > info->unread_bytes)
                info->unread_bytes = unpacked;
        } else if (kind == FATBIN_KIND_PTX) {
            size_t n = bounded_strlen((const char *)data, payload);
            uint64_t g = fcsp_ptx_globals((const char *)data, n);
            info->globals = g > info->globals ? g : info->globals;
            if (!info->ptx && !info->elf) {
                info->ptx = (const char *)data;
                info->ptx_len = n;
            }
        } else if (kind == FATBIN_KIND_ELF || kind == FATBIN_KIND_ELF_ALT) {
            uint64_t g;
            if (elf_globals(data, payload, &g) == 0) {
                info->globals = g > info->globals ? g : info->globals;
                if (!info->ptx && !info->elf) {
                    info->elf = data;
                    info->elf_len = payload;
                }
            }
        }
        off += ehsize + payload;
    }
    return 0;
}

/* Whether img begins with the n bytes of pat, compared one by one (none of the magics holds a NUL, so a short
 * string stops at its terminator). */
static int starts_with(const unsigned char *img, size_t len, const unsigned char *pat, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((len && i >= len) || img[i] != pat[i])
            return 0;
    return 1;
}

int fcsp_image_inspect(const void *image, size_t len, struct fcsp_image_info *info)
{
    static const unsigned char wrapper[] = {0xB1, 0x43, 0x62, 0x46}, container[] = {0x50, 0xED, 0x55, 0xBA},
                               elf[] = {ELFMAG0, ELFMAG1, ELFMAG2, ELFMAG3};
    memset(info, 0, sizeof *info);
    const unsigned char *img = image;
    if (img == NULL)
        return -1;
    if (starts_with(img, len, wrapper, sizeof wrapper)) {
        /* __fatBinC_Wrapper_t: magic, version, then a pointer to the container */
        if (len && len < 16)
            return -1;
        const void *inner;
        memcpy(&inner, img + 8, sizeof inner);
        return inner && starts_with(inner, 0, container, sizeof container) ? fatbin_inspect(inner, 0, info) : -1;
    }
    if (starts_with(img, len, container, sizeof container))
        return fatbin_inspect(img, len, info);
    if (starts_with(img, len, elf, sizeof elf)) {
        if (elf_globals(img, len, &info->globals) != 0)
            return -1;
        info->kind = FCSP_IMAGE_ELF;
        info->sized = 1;
        info->elf = img;
        info->elf_len = len;
        return 0;
    }
    size_t n = len ? bounded_strlen((const char *)img, len) : strlen((const char *)img);
    const char *s = (const char *)img;
    if (memmem(s, n, ".version", 8) == NULL && memmem(s, n, ".entry", 6) == NULL)
        return -1;
    info->kind = FCSP_IMAGE_PTX;
    info->sized = 1;
    info->globals = fcsp_ptx_globals(s, n);
    info->ptx = s;
    info->ptx_len = n;
    return 0;
}

/* Prints the ABI facts of one header, one per line, for tests/test_abi.py to compare between our declarations
 * (include/fcsp/cuda_abi.h, nvml_abi.h) and NVIDIA's (cuda.h, nvml.h).
 *
 * Compiled twice per header pair with:
 *   -DFCSP_ABI_HEADER='<cuda.h>' or '"fcsp/cuda_abi.h"'   the header under test
 *   -DFCSP_ABI_ITEMS='"items.inc"'                         generated from our header: one FCSP_ABI_* line each
 * Every item is on its own line of items.inc, so a compile error names the item (NVIDIA's header lacks it).
 *
 * Output lines: "<kind> <name> <value>", kinds:
 *   const   an enum constant or object-like #define: its value and C type class
 *   type    a typedef: sizeof, _Alignof and (for non-enum types) the type class
 *   field   a member of a struct/union typedef: offsetof, sizeof and the type class (elements for arrays)
 */
#define __CUDA_API_VERSION_INTERNAL 1
#include FCSP_ABI_HEADER

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* The C type of an expression, by name (enum types are compatible with an integer type; callers skip them). */
#define FCSP_ABI_CLASS(x)                                                                                          \
    _Generic((x),                                                                                                  \
        _Bool: "bool",                                                                                             \
        char: "char",                                                                                              \
        signed char: "schar",                                                                                      \
        unsigned char: "uchar",                                                                                    \
        short: "short",                                                                                            \
        unsigned short: "ushort",                                                                                  \
        int: "int",                                                                                                \
        unsigned int: "uint",                                                                                      \
        long: "long",                                                                                              \
        unsigned long: "ulong",                                                                                    \
        long long: "llong",                                                                                        \
        unsigned long long: "ullong",                                                                              \
        float: "float",                                                                                            \
        double: "double",                                                                                          \
        void *: "void*",                                                                                           \
        const void *: "const void*",                                                                               \
        char *: "char*",                                                                                           \
        const char *: "const char*",                                                                               \
        default: "other")

#define FCSP_ABI_MEMBER(T, member) (((T *)0)->member)

/* An integer (or pointer) constant. */
#define FCSP_ABI_CONST(name)                                                                                       \
    printf("const %s %lld %s\n", #name, (long long)(intptr_t)(name), FCSP_ABI_CLASS(name));
/* A string constant. */
#define FCSP_ABI_CONST_STR(name) printf("const %s \"%s\" string\n", #name, name);
/* A typedef: with or without its type class (enums: the compiler picks the integer type). */
#define FCSP_ABI_TYPE(T)                                                                                           \
    printf("type %s size=%zu align=%zu class=%s\n", #T, sizeof(T), _Alignof(T), FCSP_ABI_CLASS(*(T *)0));
#define FCSP_ABI_TYPE_ENUM(T) printf("type %s size=%zu align=%zu class=enum\n", #T, sizeof(T), _Alignof(T));
/* A member; elem is the member itself, or member[0] for arrays. */
#define FCSP_ABI_FIELD(T, member, elem)                                                                            \
    printf("field %s.%s offset=%zu size=%zu class=%s\n", #T, #member, offsetof(T, member),                        \
           sizeof(FCSP_ABI_MEMBER(T, member)), FCSP_ABI_CLASS(FCSP_ABI_MEMBER(T, elem)));
#define FCSP_ABI_FIELD_ENUM(T, member)                                                                             \
    printf("field %s.%s offset=%zu size=%zu class=enum\n", #T, #member, offsetof(T, member),                      \
           sizeof(FCSP_ABI_MEMBER(T, member)));

int main(void) {
#include FCSP_ABI_ITEMS
    return 0;
}

/* What an fcsp_region_handle of the public C API is (shared by api.c and api_node.c). */
#ifndef FCSP_API_HANDLE_H
#define FCSP_API_HANDLE_H

#include "common/region.h"

struct fcsp_region_handle {
    struct fcsp_region_map map;
};

#endif

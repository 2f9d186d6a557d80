/* Copies and sets. Device memory is not backed, so no data moves: the pointers are checked and the operation takes
 * a modelled time on its stream (synchronous forms wait for it), or is recorded into a capture graph. */
#include "sim_cuda.h"

#define COPY_BASE_NS 2000LL
#define COPY_BYTES_PER_US 25000ULL /* 25 GB/s */

static int64_t copy_ns(uint64_t bytes)
{
    return COPY_BASE_NS + (int64_t)(bytes * 1000 / COPY_BYTES_PER_US);
}

/* dst/src: device ranges to check (0: a host side). On a capturing stream the operation becomes a node of the
 * capture graph (kind: SIM_CAPTURE_MEMCPY or SIM_CAPTURE_MEMSET) taking the same modelled time when the graph
 * runs; a synchronous one is refused there. */
static CUresult transfer(enum sim_capture_kind kind, uint64_t dst, uint64_t src, uint64_t bytes, CUstream h, int pt,
                         int sync)
{
    struct CUstream_st *s;
    CUresult rc = sim_stream_resolve(h, pt, &s);
    if (rc != CUDA_SUCCESS)
        return rc;
    if (bytes == 0)
        return CUDA_SUCCESS;
    if ((dst && sim_check_range(dst, bytes) != CUDA_SUCCESS) || (src && sim_check_range(src, bytes) != CUDA_SUCCESS))
        return CUDA_ERROR_INVALID_VALUE;
    struct sim_capture_op op = {sync ? SIM_CAPTURE_SYNC : kind, NULL, copy_ns(bytes), NULL};
    if (sim_capture(s, &op, &rc))
        return rc;
    sim_exec_enqueue(s, 0, copy_ns(bytes));
    if (sync)
        sim_exec_sync_stream(s);
    return CUDA_SUCCESS;
}

static CUresult copy(uint64_t dst, uint64_t src, uint64_t bytes, CUstream h, int pt, int sync)
{
    return transfer(SIM_CAPTURE_MEMCPY, dst, src, bytes, h, pt, sync);
}

static CUresult set(uint64_t dst, uint64_t bytes, CUstream h, int pt, int sync)
{
    return transfer(SIM_CAPTURE_MEMSET, dst, 0, bytes, h, pt, sync);
}

SIM_EXPORT CUresult cuMemcpyHtoD_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
    return srcHost ? copy(dstDevice ? dstDevice : 1, 0, ByteCount, NULL, 0, 1) : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuMemcpyHtoD_v2_ptds(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount)
{
    return srcHost ? copy(dstDevice ? dstDevice : 1, 0, ByteCount, NULL, 1, 1) : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuMemcpyHtoD(CUdeviceptr_v1 dstDevice, const void *srcHost, unsigned int ByteCount)
{
    return cuMemcpyHtoD_v2(dstDevice, srcHost, ByteCount);
}

SIM_EXPORT CUresult cuMemcpyDtoH_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
    return dstHost ? copy(0, srcDevice ? srcDevice : 1, ByteCount, NULL, 0, 1) : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuMemcpyDtoH_v2_ptds(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount)
{
    return dstHost ? copy(0, srcDevice ? srcDevice : 1, ByteCount, NULL, 1, 1) : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuMemcpyDtoH(void *dstHost, CUdeviceptr_v1 srcDevice, unsigned int ByteCount)
{
    return cuMemcpyDtoH_v2(dstHost, srcDevice, ByteCount);
}

SIM_EXPORT CUresult cuMemcpyDtoD_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
{
    return copy(dstDevice ? dstDevice : 1, srcDevice ? srcDevice : 1, ByteCount, NULL, 0, 1);
}

SIM_EXPORT CUresult cuMemcpyDtoD_v2_ptds(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount)
{
    return copy(dstDevice ? dstDevice : 1, srcDevice ? srcDevice : 1, ByteCount, NULL, 1, 1);
}

SIM_EXPORT CUresult cuMemcpyDtoD(CUdeviceptr_v1 dstDevice, CUdeviceptr_v1 srcDevice, unsigned int ByteCount)
{
    return cuMemcpyDtoD_v2(dstDevice, srcDevice, ByteCount);
}

SIM_EXPORT CUresult cuMemsetD8_v2(CUdeviceptr dstDevice, unsigned char uc, size_t N)
{
    return set(dstDevice ? dstDevice : 1, N, NULL, 0, 1);
}

SIM_EXPORT CUresult cuMemsetD8_v2_ptds(CUdeviceptr dstDevice, unsigned char uc, size_t N)
{
    return set(dstDevice ? dstDevice : 1, N, NULL, 1, 1);
}

SIM_EXPORT CUresult cuMemsetD8(CUdeviceptr_v1 dstDevice, unsigned char uc, unsigned int N)
{
    return cuMemsetD8_v2(dstDevice, uc, N);
}

SIM_EXPORT CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount, CUstream hStream)
{
    return srcHost ? copy(dstDevice ? dstDevice : 1, 0, ByteCount, hStream, 0, 0) : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuMemcpyHtoDAsync_v2_ptsz(CUdeviceptr dstDevice, const void *srcHost, size_t ByteCount,
                                              CUstream hStream)
{
    return srcHost ? copy(dstDevice ? dstDevice : 1, 0, ByteCount, hStream, 1, 0) : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuMemcpyHtoDAsync(CUdeviceptr_v1 dstDevice, const void *srcHost, unsigned int ByteCount,
                                      CUstream hStream)
{
    return cuMemcpyHtoDAsync_v2(dstDevice, srcHost, ByteCount, hStream);
}

SIM_EXPORT CUresult cuMemcpyDtoHAsync_v2(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount, CUstream hStream)
{
    return dstHost ? copy(0, srcDevice ? srcDevice : 1, ByteCount, hStream, 0, 0) : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuMemcpyDtoHAsync_v2_ptsz(void *dstHost, CUdeviceptr srcDevice, size_t ByteCount,
                                              CUstream hStream)
{
    return dstHost ? copy(0, srcDevice ? srcDevice : 1, ByteCount, hStream, 1, 0) : CUDA_ERROR_INVALID_VALUE;
}

SIM_EXPORT CUresult cuMemcpyDtoHAsync(void *dstHost, CUdeviceptr_v1 srcDevice, unsigned int ByteCount,
                                      CUstream hStream)
{
    return cuMemcpyDtoHAsync_v2(dstHost, srcDevice, ByteCount, hStream);
}

SIM_EXPORT CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount,
                                         CUstream hStream)
{
    return copy(dstDevice ? dstDevice : 1, srcDevice ? srcDevice : 1, ByteCount, hStream, 0, 0);
}

SIM_EXPORT CUresult cuMemcpyDtoDAsync_v2_ptsz(CUdeviceptr dstDevice, CUdeviceptr srcDevice, size_t ByteCount,
                                              CUstream hStream)
{
    return copy(dstDevice ? dstDevice : 1, srcDevice ? srcDevice : 1, ByteCount, hStream, 1, 0);
}

SIM_EXPORT CUresult cuMemcpyDtoDAsync(CUdeviceptr_v1 dstDevice, CUdeviceptr_v1 srcDevice, unsigned int ByteCount,
                                      CUstream hStream)
{
    return cuMemcpyDtoDAsync_v2(dstDevice, srcDevice, ByteCount, hStream);
}

SIM_EXPORT CUresult cuMemsetD8Async(CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream)
{
    return set(dstDevice ? dstDevice : 1, N, hStream, 0, 0);
}

SIM_EXPORT CUresult cuMemsetD8Async_ptsz(CUdeviceptr dstDevice, unsigned char uc, size_t N, CUstream hStream)
{
    return set(dstDevice ? dstDevice : 1, N, hStream, 1, 0);
}

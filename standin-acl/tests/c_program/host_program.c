/*
 * A plain AscendCL host program: device, memory, stream and event work through the public C API only,
 * compiled against the real AscendCL headers. scripts/test-standin-c builds it against the stand-in
 * libascendcl.so (standin-acl) and runs it; nothing in it knows which runtime it is linked with, so it
 * should also pass, unchanged, on a board.
 *
 * Prints "host_program: ok" and exits 0 when every call succeeds (and the one deliberate misuse fails)
 * and every copied byte is right; otherwise names the failing call and exits 1.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "acl/acl.h"

#define N 4096

static const char *recent(void)
{
    const char *m = aclGetRecentErrMsg();
    return m != NULL ? m : "(no message)";
}

#define CHECK(call)                                                                               \
    do {                                                                                          \
        aclError err_ = (call);                                                                   \
        if (err_ != ACL_SUCCESS) {                                                                \
            fprintf(stderr, "host_program: line %d: %s returned %d: %s\n", __LINE__, #call,       \
                    (int)err_, recent());                                                         \
            return 1;                                                                             \
        }                                                                                         \
    } while (0)

#define EXPECT(cond, what)                                                                        \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            fprintf(stderr, "host_program: line %d: %s (%s is false)\n", __LINE__, what, #cond);   \
            return 1;                                                                             \
        }                                                                                         \
    } while (0)

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        p[i] = (uint8_t)(i * 31u + seed);
    }
}

static int same(const uint8_t *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] != (uint8_t)(i * 31u + seed)) {
            return 0;
        }
    }
    return 1;
}

static int run(void)
{
    CHECK(aclInit(NULL));

    uint32_t count = 0;
    CHECK(aclrtGetDeviceCount(&count));
    EXPECT(count >= 1, "aclrtGetDeviceCount reports no device");
    CHECK(aclrtSetDevice(0));
    int32_t current = -1;
    CHECK(aclrtGetDevice(&current));
    EXPECT(current == 0, "aclrtGetDevice does not return the device just set");
    const char *soc = aclrtGetSocName();
    EXPECT(soc != NULL && soc[0] != '\0', "aclrtGetSocName returned no name");

    aclrtStream stream = NULL;
    CHECK(aclrtCreateStream(&stream));

    void *dev = NULL;
    void *dev2 = NULL;
    CHECK(aclrtMalloc(&dev, N, ACL_MEM_MALLOC_HUGE_FIRST));
    CHECK(aclrtMalloc(&dev2, N, ACL_MEM_MALLOC_HUGE_FIRST));
    void *pinned_ptr = NULL;
    CHECK(aclrtMallocHost(&pinned_ptr, N));
    uint8_t *pinned = pinned_ptr;
    uint8_t *pageable = malloc(N);
    EXPECT(pageable != NULL, "malloc failed");

    /* Synchronous copies: pageable host -> device -> pinned host. */
    fill(pageable, N, 1);
    CHECK(aclrtMemcpy(dev, N, pageable, N, ACL_MEMCPY_HOST_TO_DEVICE));
    memset(pinned, 0, N);
    CHECK(aclrtMemcpy(pinned, N, dev, N, ACL_MEMCPY_DEVICE_TO_HOST));
    EXPECT(same(pinned, N, 1), "aclrtMemcpy H2D then D2H does not round-trip");

    /* Asynchronous copies on a stream, from pinned and from pageable host memory. */
    fill(pinned, N, 2);
    CHECK(aclrtMemcpyAsync(dev2, N, pinned, N, ACL_MEMCPY_HOST_TO_DEVICE, stream));
    CHECK(aclrtMemcpyAsync(dev, N, dev2, N, ACL_MEMCPY_DEVICE_TO_DEVICE, stream));
    memset(pageable, 0, N);
    CHECK(aclrtMemcpyAsync(pageable, N, dev, N, ACL_MEMCPY_DEVICE_TO_HOST, stream));
    CHECK(aclrtSynchronizeStream(stream));
    EXPECT(same(pageable, N, 2), "aclrtMemcpyAsync pinned H2D, D2D, pageable D2H lost data");
    fill(pageable, N, 3);
    CHECK(aclrtMemcpyAsync(dev2, N, pageable, N, ACL_MEMCPY_HOST_TO_DEVICE, stream));
    memset(pinned, 0, N);
    CHECK(aclrtMemcpyAsync(pinned, N, dev2, N, ACL_MEMCPY_DEVICE_TO_HOST, stream));
    CHECK(aclrtSynchronizeStream(stream));
    EXPECT(same(pinned, N, 3), "aclrtMemcpyAsync pageable H2D, pinned D2H lost data");

    aclrtStreamStatus stream_status = ACL_STREAM_STATUS_RESERVED;
    CHECK(aclrtStreamQuery(stream, &stream_status));
    EXPECT(stream_status == ACL_STREAM_STATUS_COMPLETE,
           "aclrtStreamQuery after aclrtSynchronizeStream is not COMPLETE");

    /* aclrtMemset fills count bytes with the low byte of value. */
    CHECK(aclrtMemset(dev, N, 0xAB, N));
    CHECK(aclrtMemcpy(pageable, N, dev, N, ACL_MEMCPY_DEVICE_TO_HOST));
    for (size_t i = 0; i < N; i++) {
        EXPECT(pageable[i] == 0xAB, "aclrtMemset did not set every byte");
    }

    /* Events: time a copy, then make a second stream wait for it. */
    aclrtEvent start = NULL;
    aclrtEvent end = NULL;
    CHECK(aclrtCreateEvent(&start));
    CHECK(aclrtCreateEvent(&end));
    CHECK(aclrtRecordEvent(start, stream));
    fill(pinned, N, 4);
    CHECK(aclrtMemcpyAsync(dev, N, pinned, N, ACL_MEMCPY_HOST_TO_DEVICE, stream));
    CHECK(aclrtRecordEvent(end, stream));
    aclrtEventRecordedStatus event_status = ACL_EVENT_RECORDED_STATUS_NOT_READY;
    CHECK(aclrtQueryEventStatus(end, &event_status)); /* either status is right this early */
    CHECK(aclrtSynchronizeEvent(end));
    CHECK(aclrtQueryEventStatus(end, &event_status));
    EXPECT(event_status == ACL_EVENT_RECORDED_STATUS_COMPLETE,
           "aclrtQueryEventStatus after aclrtSynchronizeEvent is not COMPLETE");
    float ms = -1.0f;
    CHECK(aclrtEventElapsedTime(&ms, start, end));
    EXPECT(ms >= 0.0f, "aclrtEventElapsedTime is negative");

    aclrtStream second = NULL;
    CHECK(aclrtCreateStream(&second));
    CHECK(aclrtStreamWaitEvent(second, end));
    memset(pageable, 0, N);
    CHECK(aclrtMemcpyAsync(pageable, N, dev, N, ACL_MEMCPY_DEVICE_TO_HOST, second));
    CHECK(aclrtSynchronizeStreamWithTimeout(second, 10000));
    EXPECT(same(pageable, N, 4), "the copy after aclrtStreamWaitEvent did not see the earlier copy");

    /* A misuse is refused with an error code and a message, not performed. */
    aclError refused = aclrtMemcpy(dev, 16, pageable, 32, ACL_MEMCPY_HOST_TO_DEVICE);
    EXPECT(refused != ACL_SUCCESS, "aclrtMemcpy with count > destMax succeeded");
    const char *message = aclGetRecentErrMsg();
    EXPECT(message != NULL && message[0] != '\0',
           "aclGetRecentErrMsg is empty after a refused aclrtMemcpy");

    CHECK(aclrtSynchronizeDevice());
    CHECK(aclrtDestroyEvent(start));
    CHECK(aclrtDestroyEvent(end));
    CHECK(aclrtDestroyStreamForce(second));
    CHECK(aclrtDestroyStream(stream));
    CHECK(aclrtFree(dev));
    CHECK(aclrtFree(dev2));
    CHECK(aclrtFreeHost(pinned));
    free(pageable);
    CHECK(aclrtResetDeviceForce(0));
    CHECK(aclFinalize());
    return 0;
}

int main(void)
{
    if (run() != 0) {
        return 1;
    }
    printf("host_program: ok\n");
    return 0;
}

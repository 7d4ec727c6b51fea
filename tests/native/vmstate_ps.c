/*
 * A C user of libvmstate.so: opens a snapshot, prints the kernel banner (read through the kernel's page tables)
 * and the process list as JSON, then shows that a bad call is an error code and a message, not a crash.
 * NativeAbiTests compiles it against include/vmstate.h and runs it on the fixture guest.
 *
 *   cc -std=c11 -Wall -Wextra -Werror -I include tests/native/vmstate_ps.c -L DIR -lvmstate -Wl,-rpath,DIR
 *   ./a.out SNAPSHOT
 */
#include <stdio.h>
#include <string.h>

#include "vmstate.h"

static int fail(const char *what, vmstate_status status)
{
    fprintf(stderr, "%s: status %d: %s\n", what, (int)status, vmstate_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s SNAPSHOT\n", argv[0]);
        return 2;
    }

    printf("libvmstate %s\n", vmstate_version());

    vmstate_open_options options;
    memset(&options, 0, sizeof options);
    options.size = sizeof options;
    vmstate_vm *vm = NULL;
    vmstate_status status = vmstate_open(argv[1], &options, &vm);
    if (status != VMSTATE_OK) {
        return fail("vmstate_open", status);
    }

    uint64_t banner_address = 0;
    status = vmstate_symbol(vm, "linux_banner", &banner_address);
    if (status != VMSTATE_OK) {
        return fail("vmstate_symbol", status);
    }

    char banner[256];
    size_t got = 0;
    status = vmstate_read_virtual(vm, VMSTATE_KERNEL_SPACE, banner_address, banner, sizeof banner - 1, &got);
    if (status != VMSTATE_OK) {
        return fail("vmstate_read_virtual", status);
    }
    banner[got] = '\0';
    banner[strcspn(banner, "\n")] = '\0';
    printf("banner %s\n", banner);

    char *json = NULL;
    size_t length = 0;
    status = vmstate_processes_json(vm, 0, &json, &length);
    if (status != VMSTATE_OK) {
        return fail("vmstate_processes_json", status);
    }
    printf("json %zu bytes\n", length);
    fwrite(json, 1, length, stdout);
    vmstate_free(json);

    /* Errors: a NULL out-pointer, and the handle after it was closed. */
    status = vmstate_processes_json(vm, 0, NULL, &length);
    printf("null-pointer status %d: %s\n", (int)status, vmstate_last_error());
    status = vmstate_close(vm);
    if (status != VMSTATE_OK) {
        return fail("vmstate_close", status);
    }
    status = vmstate_read_physical(vm, 0, banner, 16, &got);
    printf("closed-handle status %d: %s\n", (int)status, vmstate_last_error());
    return 0;
}

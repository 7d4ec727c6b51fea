/*
 * vmstate.h: the C interface of libvmstate.so, VmState's library (src/VmState) compiled with .NET Native AOT.
 *
 * Build the library with eng/native.sh (prints the path of libvmstate.so). Link with -lvmstate, or load it with
 * dlopen / Python ctypes (python/vmstate wraps it). The library needs no .NET installation at run time.
 *
 * Conventions
 *  - Every function but vmstate_version, vmstate_last_error and vmstate_free returns a vmstate_status:
 *    VMSTATE_OK (0) or an error code. After an error, vmstate_last_error() gives the message on the same thread.
 *  - Results are written through out-pointers only on success (bytes_read also on a short read, which is a success).
 *  - Every pointer argument is checked: NULL where one is required gives VMSTATE_ERROR_INVALID_ARGUMENT, never a
 *    crash. A handle that was closed, or never opened, gives VMSTATE_ERROR_INVALID_ARGUMENT as well.
 *  - Strings are UTF-8 and NUL-terminated, in and out.
 *  - Calls on one handle are serialised (a handle may be shared between threads; its calls run one at a time);
 *    different handles are independent.
 *  - Addresses: "physical" is guest-physical; "virtual" is translated through the page tables of an address space
 *    chosen by pid: VMSTATE_KERNEL_SPACE (0) for the kernel's own, or a process id for that process's user space
 *    (its mm->pgd, found in the guest's task list with no profile).
 */
#ifndef VMSTATE_H
#define VMSTATE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* An open VM: a snapshot file (vmstate_open) or a running QEMU (vmstate_attach). Opaque; close with vmstate_close. */
typedef struct vmstate_vm vmstate_vm;

/* What a call gave. The codes follow the library's typed exceptions (docs/library.md, "Errors are typed"). */
typedef enum vmstate_status {
    VMSTATE_OK = 0,
    VMSTATE_ERROR_INVALID_ARGUMENT = 1, /* a NULL or unknown handle, a NULL pointer, a bad length, flag or pid */
    VMSTATE_ERROR_FORMAT = 2,           /* the file is not a supported snapshot, or is malformed (VmStateFormatException) */
    VMSTATE_ERROR_GUEST_DATA = 3,       /* guest kernel data that makes no sense, no kernel found, a kernel thread has no
                                           user memory (KernelDataException) */
    VMSTATE_ERROR_NOT_FOUND = 4,        /* a qcow2 snapshot, symbol, type or pid that is not there (VmStateNotFoundException) */
    VMSTATE_ERROR_IO = 5,               /* the host: no such file, permission denied, a socket that cannot be reached,
                                           an input that changed while read (IOException) */
    VMSTATE_ERROR_VM_GONE = 6,          /* QEMU exited or its QMP socket closed (LiveVmGoneException) */
    VMSTATE_ERROR_QMP = 7,              /* QEMU refused a command (QmpException) */
    VMSTATE_ERROR_TIMEOUT = 8,          /* vmstate_attach_options.timeout_ms passed, or QEMU did not answer in time */
    VMSTATE_ERROR_UNMAPPED = 9,         /* vmstate_translate: the virtual address is not mapped (the message says at
                                           which paging level) */
    VMSTATE_ERROR_INVALID_STATE = 10,   /* the call does not fit the VM's state (e.g. vmstate_resume with no pause) */
    VMSTATE_ERROR_DATA = 11,            /* another kind of bad data the library reports (a VmStateException not above) */
    VMSTATE_ERROR_INTERNAL = 12         /* anything else: a bug in VmState; the message has the exception type */
} vmstate_status;

/* The kernel's address space, for vmstate_read_virtual and vmstate_translate (pid 0 is the idle task, which runs
   on the kernel's page tables). */
#define VMSTATE_KERNEL_SPACE 0

/* vmstate_open_options.flags */
#define VMSTATE_OPEN_ALLOW_RAW 0x1u /* a file with no known magic is a raw physical memory image */
#define VMSTATE_OPEN_NO_CACHE 0x2u  /* no block cache: for one pass over all of RAM */

/* Options for vmstate_open. Set size to sizeof(vmstate_open_options) (later versions may append fields); zero the
   rest for the defaults. */
typedef struct vmstate_open_options {
    uint32_t size;
    uint32_t flags;          /* VMSTATE_OPEN_* */
    const char *snapshot;    /* qcow2: the internal snapshot's id or name; NULL for the newest */
    const char *system_map;  /* the kernel's System.map instead of kallsyms from memory; NULL for none */
    const char *btf;         /* a BTF file (e.g. /sys/kernel/btf/vmlinux) instead of the kernel's own; NULL for none */
} vmstate_open_options;

/* vmstate_attach_options.flags */
#define VMSTATE_ATTACH_PAUSE 0x1u /* pause the guest while attached (resumed by vmstate_close); as vmstate_pause */

/* Options for vmstate_attach. Set size to sizeof(vmstate_attach_options); zero the rest for the defaults. */
typedef struct vmstate_attach_options {
    uint32_t size;
    uint32_t flags;          /* VMSTATE_ATTACH_* */
    uint32_t timeout_ms;     /* give up attaching after this long (VMSTATE_ERROR_TIMEOUT); 0 for no limit */
    uint32_t reserved;       /* 0 */
    const char *system_map;  /* as in vmstate_open_options */
    const char *btf;
} vmstate_attach_options;

/* vmstate_processes_json flags */
#define VMSTATE_PROCESSES_THREADS 0x1u    /* every thread, not only thread-group leaders (vmstate ps --threads) */
#define VMSTATE_PROCESSES_NO_CMDLINE 0x2u /* do not read command lines from process memory (vmstate ps --no-cmdline) */

/* The library's version, e.g. "0.1.0" (static; never free it). */
const char *vmstate_version(void);

/* The message of the last call that failed on this thread, or "" if none has. Calls that succeed leave it as it is.
   Valid until the next failing call on this thread; never free it. */
const char *vmstate_last_error(void);

/* Opens a snapshot file of any supported kind (migration stream, virsh save, qcow2 internal snapshot, ELF core,
   raw image with VMSTATE_OPEN_ALLOW_RAW), recognised by its first bytes. options may be NULL. */
vmstate_status vmstate_open(const char *path, const vmstate_open_options *options, vmstate_vm **vm);

/* Attaches to a running QEMU through a QMP UNIX socket (QEMU serves one client per socket). options may be NULL.
   Reads then see the running guest: pause it (VMSTATE_ATTACH_PAUSE or vmstate_pause) for a consistent view. */
vmstate_status vmstate_attach(const char *qmp_socket, const vmstate_attach_options *options, vmstate_vm **vm);

/* Pauses a running guest until vmstate_resume or vmstate_close; a guest that was already paused stays paused when
   the pause ends. The library also resumes the guest if the process gets SIGINT, SIGTERM, SIGHUP or SIGQUIT (the
   process's own handling of the signal follows) or exits normally (exit, return from main) with the handle open.
   Does nothing on a snapshot. VMSTATE_ERROR_INVALID_STATE if a pause is already held. */
vmstate_status vmstate_pause(vmstate_vm *vm);

/* Ends the pause taken by vmstate_pause or VMSTATE_ATTACH_PAUSE. VMSTATE_ERROR_INVALID_STATE if none is held. */
vmstate_status vmstate_resume(vmstate_vm *vm);

/* Resumes a guest this handle paused, then closes the file or the QMP connection and frees the handle.
   NULL is allowed (nothing happens). The handle is freed even when an error is returned (the guest could not be
   resumed: the message says why). */
vmstate_status vmstate_close(vmstate_vm *vm);

/* Reads up to length bytes of guest-physical memory at address into buffer. A read that stops at memory the VM
   does not have is not an error: *bytes_read says how many bytes were read (0 when address itself is not backed). */
vmstate_status vmstate_read_physical(vmstate_vm *vm, uint64_t address, void *buffer, size_t length, size_t *bytes_read);

/* Reads up to length bytes of virtual memory in the address space of pid (VMSTATE_KERNEL_SPACE for the kernel's).
   Stops at the first byte that is not mapped or not backed; *bytes_read says how many bytes were read.
   VMSTATE_ERROR_NOT_FOUND for a pid the task list lacks, VMSTATE_ERROR_GUEST_DATA for a kernel thread's pid. */
vmstate_status vmstate_read_virtual(vmstate_vm *vm, int32_t pid, uint64_t address, void *buffer, size_t length, size_t *bytes_read);

/* Translates a virtual address of pid's address space (VMSTATE_KERNEL_SPACE for the kernel's) to guest-physical.
   VMSTATE_ERROR_UNMAPPED when it is not mapped. */
vmstate_status vmstate_translate(vmstate_vm *vm, int32_t pid, uint64_t address, uint64_t *physical_address);

/* The kernel-virtual address of a symbol expression: "name", "name+0x10" or "name+16" (kallsyms, or the System.map
   given). VMSTATE_ERROR_NOT_FOUND for an unknown symbol. */
vmstate_status vmstate_symbol(vmstate_vm *vm, const char *expression, uint64_t *address);

/* The guest's processes as JSON, the document `vmstate ps --json` prints (the same bytes):
     {"release": "6.1.0-...", "processes": [{"pid", "tgid", "ppid", "uid", "gid", "state", "comm", "kernelThread",
      "threads", "startTimeNs", "cmdline" (string or null), "task" ("0x..." task_struct address)}, ...]}
   flags: VMSTATE_PROCESSES_*. *json receives a NUL-terminated UTF-8 buffer to release with vmstate_free, *length its
   length without the NUL. A running guest is read again at every call. */
vmstate_status vmstate_processes_json(vmstate_vm *vm, uint32_t flags, char **json, size_t *length);

/* Frees a buffer the library returned (vmstate_processes_json). NULL is allowed. */
void vmstate_free(void *buffer);

#ifdef __cplusplus
}
#endif

#endif /* VMSTATE_H */

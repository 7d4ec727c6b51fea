using System.Reflection;
using System.Runtime.InteropServices;
using VmState.Arch.X86;
using VmState.Linux;

namespace VmState.Native;

/// <summary>
/// The exported C functions of libvmstate.so (include/vmstate.h documents each). Every one checks its pointers and
/// lengths first, runs the library call under the handle's lock, and turns any exception into a status and a
/// thread-local message (<see cref="NativeErrors"/>): an exception that reached the C caller would end the process.
/// </summary>
internal static unsafe class NativeExports
{
    private const uint ProcessesThreads = 0x1;
    private const uint ProcessesNoCommandLine = 0x2;

    // Spans are int-sized: longer requests are read in pieces of this size.
    private const int MaxChunk = 1 << 30;

    private static readonly byte* s_version = NativeErrors.AllocateUtf8(
        typeof(Vm).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0] ?? "unknown");

    [UnmanagedCallersOnly(EntryPoint = "vmstate_version")]
    public static byte* Version() => s_version;

    [UnmanagedCallersOnly(EntryPoint = "vmstate_last_error")]
    public static byte* LastError() => NativeErrors.LastMessage;

    [UnmanagedCallersOnly(EntryPoint = "vmstate_free")]
    public static void Free(void* buffer) => NativeMemory.Free(buffer);

    [UnmanagedCallersOnly(EntryPoint = "vmstate_open")]
    public static int Open(byte* path, NativeOpenOptions* options, nint* vm)
    {
        try
        {
            if (path == null || vm == null)
            {
                return Invalid(path == null ? "path is NULL" : "vm (the handle's out-pointer) is NULL");
            }

            var open = new VmOpenOptions();
            if (options != null)
            {
                if (options->Size < (uint)sizeof(NativeOpenOptions))
                {
                    return Invalid($"options->size is {options->Size}: set it to sizeof(vmstate_open_options), {sizeof(NativeOpenOptions)}");
                }

                if ((options->Flags & ~NativeOpenOptions.KnownFlags) != 0)
                {
                    return Invalid($"options->flags has unknown bits 0x{options->Flags & ~NativeOpenOptions.KnownFlags:x}");
                }

                open = new VmOpenOptions
                {
                    Snapshot = Utf8(options->Snapshot),
                    AllowRaw = (options->Flags & NativeOpenOptions.AllowRaw) != 0,
                    CacheReads = (options->Flags & NativeOpenOptions.NoCache) == 0,
                    Kernel = KernelOptions(options->SystemMap, options->Btf),
                };
            }

            Vm opened = Vm.Open(Utf8((nint)path)!, open);
            *vm = HandleTable.Add(new NativeSession(opened));
            return Ok;
        }
        catch (Exception e)
        {
            return NativeErrors.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "vmstate_attach")]
    public static int Attach(byte* qmpSocket, NativeAttachOptions* options, nint* vm)
    {
        try
        {
            if (qmpSocket == null || vm == null)
            {
                return Invalid(qmpSocket == null ? "qmp_socket is NULL" : "vm (the handle's out-pointer) is NULL");
            }

            NativeAttachOptions o = default;
            if (options != null)
            {
                if (options->Size < (uint)sizeof(NativeAttachOptions))
                {
                    return Invalid($"options->size is {options->Size}: set it to sizeof(vmstate_attach_options), {sizeof(NativeAttachOptions)}");
                }

                if ((options->Flags & ~NativeAttachOptions.KnownFlags) != 0 || options->Reserved != 0)
                {
                    return Invalid(options->Reserved != 0 ? "options->reserved must be 0" : $"options->flags has unknown bits 0x{options->Flags & ~NativeAttachOptions.KnownFlags:x}");
                }

                o = *options;
            }

            string socket = Utf8((nint)qmpSocket)!;
            using CancellationTokenSource? timeout = o.TimeoutMs > 0 ? new CancellationTokenSource(TimeSpan.FromMilliseconds(o.TimeoutMs)) : null;
            CancellationToken token = timeout?.Token ?? CancellationToken.None;
            NativeSession? session = null;
            try
            {
                // Synchronous over the async API: a C caller has no event loop to give, and the library's awaits do
                // not need the calling thread (ConfigureAwait(false) throughout, no synchronisation context here).
                Vm attached = Vm.AttachAsync(socket, new VmAttachOptions { Kernel = KernelOptions(o.SystemMap, o.Btf) }, token).GetAwaiter().GetResult();
                session = new NativeSession(attached);
                if ((o.Flags & NativeAttachOptions.Pause) != 0)
                {
                    // A pause of the caller's (not VmAttachOptions.Pause, which the Vm keeps to itself), so that
                    // vmstate_resume can end it. PauseAsync reads the registers again once the guest is stopped.
                    ProcessExitHook.Ensure();
                    session.Pause = attached.PauseAsync(token).GetAwaiter().GetResult();
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                session?.Dispose();
                return NativeErrors.Fail(VmStateStatus.Timeout, $"attaching to {socket} took longer than {o.TimeoutMs} ms");
            }
            catch
            {
                session?.Dispose();
                throw;
            }

            *vm = HandleTable.Add(session);
            return Ok;
        }
        catch (Exception e)
        {
            return NativeErrors.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "vmstate_close")]
    public static int Close(nint vm)
    {
        try
        {
            if (vm == 0)
            {
                return Ok;
            }

            NativeSession? session = HandleTable.Remove(vm);
            if (session is null)
            {
                return UnknownHandle(vm);
            }

            VmPause? pause = session.Pause;
            lock (session.Gate)
            {
                session.Dispose();
            }

            return pause?.ResumeFailure is Exception failure
                ? NativeErrors.Fail(NativeErrors.StatusOf(failure), $"closed, but the guest could not be resumed: {failure.Message}")
                : Ok;
        }
        catch (Exception e)
        {
            return NativeErrors.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "vmstate_pause")]
    public static int Pause(nint vm)
    {
        try
        {
            return WithOpenSession(vm, session =>
            {
                if (session.Pause is not null)
                {
                    return NativeErrors.Fail(VmStateStatus.InvalidState, "this handle already holds a pause (vmstate_resume ends it)");
                }

                ProcessExitHook.Ensure();
                session.Pause = session.Vm.PauseAsync().GetAwaiter().GetResult();
                return Ok;
            });
        }
        catch (Exception e)
        {
            return NativeErrors.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "vmstate_resume")]
    public static int Resume(nint vm)
    {
        try
        {
            return WithOpenSession(vm, session =>
            {
                if (session.Pause is not VmPause pause)
                {
                    return NativeErrors.Fail(VmStateStatus.InvalidState, "this handle holds no pause (vmstate_pause or VMSTATE_ATTACH_PAUSE takes one)");
                }

                session.Pause = null;
                pause.Dispose();
                return pause.ResumeFailure is Exception failure ? NativeErrors.Fail(failure) : Ok;
            });
        }
        catch (Exception e)
        {
            return NativeErrors.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "vmstate_read_physical")]
    public static int ReadPhysical(nint vm, ulong address, byte* buffer, nuint length, nuint* bytesRead)
    {
        try
        {
            if (CheckRead(address, buffer, length, bytesRead) is string problem)
            {
                return Invalid(problem);
            }

            return WithOpenSession(vm, session =>
            {
                *bytesRead = ReadPieces(address, buffer, length, session.Vm.Machine.Memory.Read);
                return Ok;
            });
        }
        catch (Exception e)
        {
            return NativeErrors.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "vmstate_read_virtual")]
    public static int ReadVirtual(nint vm, int pid, ulong address, byte* buffer, nuint length, nuint* bytesRead)
    {
        try
        {
            if (CheckRead(address, buffer, length, bytesRead) is string problem)
            {
                return Invalid(problem);
            }

            if (pid < 0)
            {
                return Invalid($"pid {pid} is negative (0 is the kernel's address space)");
            }

            return WithOpenSession(vm, session =>
            {
                *bytesRead = ReadPieces(address, buffer, length, session.Space(pid).Read);
                return Ok;
            });
        }
        catch (Exception e)
        {
            return NativeErrors.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "vmstate_translate")]
    public static int Translate(nint vm, int pid, ulong address, ulong* physicalAddress)
    {
        try
        {
            if (physicalAddress == null || pid < 0)
            {
                return Invalid(physicalAddress == null ? "physical_address is NULL" : $"pid {pid} is negative (0 is the kernel's address space)");
            }

            return WithOpenSession(vm, session =>
            {
                Translation t = session.Space(pid).Translate(address);
                if (t.PhysicalAddress is not ulong pa)
                {
                    string space = pid == 0 ? "the kernel's address space" : $"the address space of pid {pid}";
                    return NativeErrors.Fail(VmStateStatus.Unmapped, $"0x{address:x} is not mapped in {space}: {t.Failure}");
                }

                *physicalAddress = pa;
                return Ok;
            });
        }
        catch (Exception e)
        {
            return NativeErrors.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "vmstate_symbol")]
    public static int Symbol(nint vm, byte* expression, ulong* address)
    {
        try
        {
            if (expression == null || address == null)
            {
                return Invalid(expression == null ? "expression is NULL" : "address is NULL");
            }

            return WithOpenSession(vm, session =>
            {
                *address = session.Vm.Linux.Symbol(Utf8((nint)expression)!);
                return Ok;
            });
        }
        catch (Exception e)
        {
            return NativeErrors.Fail(e);
        }
    }

    [UnmanagedCallersOnly(EntryPoint = "vmstate_processes_json")]
    public static int ProcessesJson(nint vm, uint flags, byte** json, nuint* length)
    {
        try
        {
            if (json == null || length == null)
            {
                return Invalid(json == null ? "json is NULL" : "length is NULL");
            }

            if ((flags & ~(ProcessesThreads | ProcessesNoCommandLine)) != 0)
            {
                return Invalid($"flags has unknown bits 0x{flags & ~(ProcessesThreads | ProcessesNoCommandLine):x}");
            }

            byte[] bytes = [];
            int status = WithOpenSession(vm, session =>
            {
                LinuxGuest linux = session.Vm.Linux;
                if (session.Vm.IsLive)
                {
                    // The views are cached per Vm; a running guest's list is read again at every call.
                    linux.Refresh();
                }

                bool threads = (flags & ProcessesThreads) != 0;
                bytes = ProcessJson.Write(linux.Kernel.Release, linux.Processes(threads, (flags & ProcessesNoCommandLine) == 0), threads);
                return Ok;
            });
            if (status != Ok)
            {
                return status;
            }

            byte* p = (byte*)NativeMemory.Alloc((nuint)bytes.Length + 1);
            bytes.CopyTo(new Span<byte>(p, bytes.Length));
            p[bytes.Length] = 0;
            *json = p;
            *length = (nuint)bytes.Length;
            return Ok;
        }
        catch (Exception e)
        {
            return NativeErrors.Fail(e);
        }
    }

    private static int Ok => (int)VmStateStatus.Ok;

    private static int Invalid(string message) => NativeErrors.Fail(VmStateStatus.InvalidArgument, message);

    private static int UnknownHandle(nint vm) =>
        Invalid($"0x{vm:x} is not an open vmstate handle (closed already, or not from vmstate_open / vmstate_attach)");

    private static NativeSession? Find(nint vm) => vm == 0 ? null : HandleTable.Find(vm);

    /// <summary>Runs <paramref name="body"/> on the open session of handle <paramref name="vm"/>, under its lock; an unknown or closed handle is an error.</summary>
    private static int WithOpenSession(nint vm, Func<NativeSession, int> body)
    {
        if (Find(vm) is not NativeSession session)
        {
            return UnknownHandle(vm);
        }

        lock (session.Gate)
        {
            return session.IsClosed ? UnknownHandle(vm) : body(session);
        }
    }

    /// <summary>Why a read's arguments are wrong, or null when they are fine.</summary>
    private static string? CheckRead(ulong address, byte* buffer, nuint length, nuint* bytesRead)
    {
        if (bytesRead == null)
        {
            return "bytes_read is NULL";
        }

        if (buffer == null && length != 0)
        {
            return "buffer is NULL";
        }

        if (length != 0 && length - 1 > ulong.MaxValue - address)
        {
            return $"0x{address:x} + {length} bytes runs past the end of the address space";
        }

        return null;
    }

    /// <summary>Reads <paramref name="length"/> bytes in int-sized pieces; stops at the first short piece.</summary>
    private static nuint ReadPieces(ulong address, byte* buffer, nuint length, Func<ulong, Span<byte>, int> read)
    {
        nuint done = 0;
        while (done < length)
        {
            int piece = (int)Math.Min(length - done, MaxChunk);
            int got = read(address + done, new Span<byte>(buffer + done, piece));
            done += (nuint)got;
            if (got < piece)
            {
                break;
            }
        }

        return done;
    }

    private static string? Utf8(nint text) => text == 0 ? null : Marshal.PtrToStringUTF8(text);

    private static KernelLocatorOptions? KernelOptions(nint systemMap, nint btf) =>
        systemMap == 0 && btf == 0 ? null : KernelLocatorOptions.Default with { SystemMapPath = Utf8(systemMap), BtfPath = Utf8(btf) };
}

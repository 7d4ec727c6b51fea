using System.Buffers.Binary;
using VmState.Linux;

namespace VmState.Events;

/// <summary>
/// Program starts as typed events: one breakpoint on <c>setup_new_exec(struct linux_binprm *bprm)</c> (fs/exec.c, an
/// exported function in every kernel from 2.6 to 6.12), which the binary loaders call once the new memory map is
/// installed (and the task's comm set to the new program's name). There, <c>bprm->filename</c> is the kernel's copy of the file name,
/// <c>bprm->argc</c> the argument count, and <c>bprm->p</c> points at argv[0] in the new program's stack, the
/// argument strings following one another NUL-terminated (fs/exec.c <c>copy_strings</c> copies the last argument
/// first, downwards), in pages the kernel has just filled — so unlike at the <c>execve</c> system call entry, where
/// the caller's strings may sit in pages a fresh fork has not mapped yet, they are always readable. The vCPU's CR3 is
/// already the new program's (<c>begin_new_exec</c> → <c>exec_mmap</c> → <c>switch_mm</c>), so the strings are read
/// through it. Only execs that succeed up to that point are seen; a failed exec returns before it.
/// </summary>
public sealed class ExecTracer
{
    /// <summary>The function the breakpoint is on.</summary>
    public const string Function = "setup_new_exec";

    /// <summary>The most arguments kept (bcc's execsnoop keeps 20).</summary>
    public const int MaxArgs = 64;

    /// <summary>The most bytes of argument strings read.</summary>
    public const int MaxArgBytes = 4096;

    /// <summary>The most bytes of the file name read (PATH_MAX).</summary>
    public const int MaxFilename = 4096;

    private readonly LinuxKernel _kernel;
    private readonly ulong _bprmP;
    private readonly ulong _bprmArgc;
    private readonly ulong _bprmFilename;
    private readonly ulong _taskRealParent;
    private readonly ulong _taskTgid;
    private readonly ulong _taskCred;
    private readonly ulong _credUid;

    private ExecTracer(LinuxKernel kernel)
    {
        _kernel = kernel;
        var types = kernel.Types;
        int bprm = types.FindType("struct linux_binprm");
        _bprmP = types.Member(bprm, "p").ByteOffset;
        _bprmArgc = types.Member(bprm, "argc").ByteOffset;
        _bprmFilename = types.Member(bprm, "filename").ByteOffset;
        int task = types.FindType("struct task_struct");
        _taskRealParent = types.Member(task, "real_parent").ByteOffset;
        _taskTgid = types.Member(task, "tgid").ByteOffset;
        _taskCred = types.Member(task, "cred").ByteOffset;
        _credUid = types.Member(types.FindType("struct cred"), "uid").ByteOffset;
    }

    /// <summary>The breakpoint on <see cref="Function"/>.</summary>
    public TraceBreakpoint Breakpoint { get; private set; } = null!;

    /// <summary>
    /// Sets a breakpoint on <see cref="Function"/> whose hits (after <paramref name="filter"/> and the session's own
    /// filter, both applied to the task doing the exec, whose comm is already the new program's) become
    /// <see cref="ExecEvent"/>s for <paramref name="handler"/>.
    /// </summary>
    /// <exception cref="KernelDataException">The kernel has no <c>setup_new_exec</c>, or its BTF lacks the structures read.</exception>
    /// <exception cref="InvalidOperationException">QEMU refused the breakpoint.</exception>
    public static ExecTracer Subscribe(GdbTraceSession session, Func<ExecEvent, TraceAction> handler, TraceHitFilter? filter = null)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(handler);
        LinuxKernel kernel = session.Kernel;
        ulong function = kernel.Symbols.AddressOf(Function);
        var tracer = new ExecTracer(kernel);
        tracer.Breakpoint = session.Subscribe(function, Function, hit => handler(tracer.Decode(hit)), filter: filter);
        return tracer;
    }

    /// <summary>The exec of a hit at <see cref="Function"/>.</summary>
    public ExecEvent Decode(BreakpointHit hit)
    {
        ArgumentNullException.ThrowIfNull(hit);
        ulong bprm = hit.Registers.Rdi;
        var problems = new List<string>();
        byte[] filename = [];
        int argc = 0;
        ulong strings = 0;
        try
        {
            ulong name = _kernel.ReadU64(bprm + _bprmFilename, "linux_binprm.filename");
            filename = ReadCString(name, MaxFilename, hit);
            argc = (int)_kernel.ReadU32(bprm + _bprmArgc, "linux_binprm.argc");
            strings = _kernel.ReadU64(bprm + _bprmP, "linux_binprm.p");
        }
        catch (Exception e) when (e is VmStateException or IOException)
        {
            problems.Add(e.Message);
        }

        (List<byte[]> argv, bool truncated) = ReadArguments(hit, strings, argc, problems);
        int? ppid = null;
        uint? uid = null;
        if (hit.TaskAddress != 0)
        {
            try
            {
                ulong parent = _kernel.ReadU64(hit.TaskAddress + _taskRealParent, "task_struct.real_parent");
                ppid = (int)_kernel.ReadU32(parent + _taskTgid, "task_struct.tgid of the parent");
                ulong cred = _kernel.ReadU64(hit.TaskAddress + _taskCred, "task_struct.cred");
                uid = _kernel.ReadU32(cred + _credUid, "cred.uid");
            }
            catch (Exception e) when (e is VmStateException or IOException)
            {
                problems.Add(e.Message);
            }
        }
        else if (hit.TaskProblem is string taskProblem)
        {
            problems.Add(taskProblem);
        }

        return new ExecEvent
        {
            Hit = hit,
            Ppid = ppid,
            Uid = uid,
            Filename = filename,
            Argv = argv,
            Argc = argc,
            ArgvTruncated = truncated,
            Problem = problems.Count == 0 ? null : string.Join("; ", problems),
        };
    }

    /// <summary>
    /// Splits the NUL-terminated strings at the start of <paramref name="area"/> into at most <paramref name="argc"/>
    /// (and <see cref="MaxArgs"/>) arguments; truncated when fewer complete strings were there.
    /// </summary>
    public static (List<byte[]> Argv, bool Truncated) SplitArguments(ReadOnlySpan<byte> area, int argc)
    {
        var argv = new List<byte[]>();
        int want = Math.Min(Math.Max(argc, 0), MaxArgs);
        while (argv.Count < want)
        {
            int nul = area.IndexOf((byte)0);
            if (nul < 0)
            {
                break;
            }

            argv.Add(area[..nul].ToArray());
            area = area[(nul + 1)..];
        }

        return (argv, argv.Count < argc);
    }

    private static (List<byte[]> Argv, bool Truncated) ReadArguments(BreakpointHit hit, ulong strings, int argc, List<string> problems)
    {
        if (strings == 0 || argc <= 0)
        {
            return ([], argc > 0);
        }

        var area = new byte[MaxArgBytes];
        int n;
        try
        {
            n = hit.ReadMemory(strings, area);
        }
        catch (Exception e) when (e is VmStateException or IOException)
        {
            problems.Add($"the arguments at 0x{strings:x}: {e.Message}");
            return ([], true);
        }

        return SplitArguments(area.AsSpan(0, n), argc);
    }

    private static byte[] ReadCString(ulong address, int max, BreakpointHit hit)
    {
        var buffer = new byte[max];
        int n = hit.ReadMemory(address, buffer);
        int nul = Array.IndexOf(buffer, (byte)0, 0, n);
        return buffer[..(nul < 0 ? n : nul)];
    }
}

using System.Buffers.Binary;
using VmState.Linux;

namespace VmState.Events;

/// <summary>
/// System calls as typed events: one breakpoint on the x86-64 system call entry <c>do_syscall_64(struct pt_regs
/// *regs, int nr)</c> (arch/x86/entry/common.c, the same two arguments from 4.x to 6.12), where RSI holds the number
/// and RDI the task's saved user registers, whose six argument slots are read in one block. Every system call of
/// every task stops the VM (QEMU's stub has no conditions), so a pid or comm filter still costs one stop per call;
/// calls of the 32-bit entries (<c>int 0x80</c>, <c>sysenter</c>) are not seen.
/// </summary>
public sealed class SyscallTracer
{
    /// <summary>The function the breakpoint is on.</summary>
    public const string EntryFunction = "do_syscall_64";

    /// <summary>x32 system calls have this bit set in their number (arch/x86/include/uapi/asm/unistd.h __X32_SYSCALL_BIT).</summary>
    public const long X32SyscallBit = 0x4000_0000;

    // struct pt_regs on x86-64 (arch/x86/include/asm/ptrace.h): r15 r14 r13 r12 bp bx r11 r10 r9 r8 ax cx dx si di
    // orig_ax ip cs flags sp ss, 8 bytes each; the layout is the one the entry code pushes and ptrace's
    // user_regs_struct mirrors, unchanged across kernel versions.
    private const int PtRegsArgumentsStart = 7 * 8; // r10
    private const int PtRegsArgumentsLength = (14 - 7 + 1) * 8; // r10 .. di
    private static readonly int[] s_argumentSlots = [14, 13, 12, 7, 9, 8]; // di si dx r10 r8 r9

    private readonly LinuxKernel _kernel;

    private SyscallTracer(LinuxKernel kernel, SyscallTable? table, string? tableProblem)
    {
        _kernel = kernel;
        Table = table;
        TableProblem = tableProblem;
    }

    /// <summary>The guest kernel's system call names, or null when they could not be decoded (see <see cref="TableProblem"/>).</summary>
    public SyscallTable? Table { get; }

    /// <summary>Why <see cref="Table"/> is null: calls are then reported by number only.</summary>
    public string? TableProblem { get; }

    /// <summary>The breakpoint on <see cref="EntryFunction"/>.</summary>
    public TraceBreakpoint Breakpoint { get; private set; } = null!;

    /// <summary>
    /// Decodes the guest's system call table and sets a breakpoint on the system call entry whose hits (after
    /// <paramref name="filter"/> and the session's own filter) become <see cref="SyscallEvent"/>s for
    /// <paramref name="handler"/>.
    /// </summary>
    /// <exception cref="KernelDataException">The kernel has no <c>do_syscall_64</c>.</exception>
    /// <exception cref="InvalidOperationException">QEMU refused the breakpoint.</exception>
    public static SyscallTracer Subscribe(GdbTraceSession session, Func<SyscallEvent, TraceAction> handler, TraceHitFilter? filter = null)
    {
        ArgumentNullException.ThrowIfNull(session);
        ArgumentNullException.ThrowIfNull(handler);
        LinuxKernel kernel = session.Kernel;
        ulong entry = kernel.Symbols.AddressOf(EntryFunction);
        SyscallTable? table = null;
        string? problem = null;
        try
        {
            table = SyscallTable.Read(kernel);
        }
        catch (KernelDataException e)
        {
            problem = e.Message;
        }

        var tracer = new SyscallTracer(kernel, table, problem);
        tracer.Breakpoint = session.Subscribe(entry, EntryFunction, hit => handler(tracer.Decode(hit)), filter: filter);
        return tracer;
    }

    /// <summary>The system call of a hit at <see cref="EntryFunction"/>.</summary>
    public SyscallEvent Decode(BreakpointHit hit)
    {
        ArgumentNullException.ThrowIfNull(hit);
        long number = (int)hit.Registers.Rsi;
        Span<byte> block = stackalloc byte[PtRegsArgumentsLength];
        ulong[] arguments = [];
        if (_kernel.Read(hit.Registers.Rdi + PtRegsArgumentsStart, block) == block.Length)
        {
            arguments = new ulong[s_argumentSlots.Length];
            for (int i = 0; i < arguments.Length; i++)
            {
                arguments[i] = BinaryPrimitives.ReadUInt64LittleEndian(block[(((s_argumentSlots[i] * 8) - PtRegsArgumentsStart))..]);
            }
        }

        return new SyscallEvent
        {
            Hit = hit,
            Number = number,
            Name = (number & X32SyscallBit) != 0 ? null : Table?.Name(number),
            Arguments = arguments,
        };
    }
}

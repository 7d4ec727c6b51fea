namespace VmState.Events;

/// <summary>A breakpoint or watchpoint set by a <see cref="GdbTraceSession"/>.</summary>
/// <param name="Address">The guest-virtual address (of the instruction, or of the watched data).</param>
/// <param name="Label">What the user asked for (<c>do_sys_open</c>, <c>vfs_read+0x10</c>, an address).</param>
/// <param name="Hardware">True for a hardware breakpoint (gdb <c>Z1</c>) or any watchpoint, false for a software breakpoint (<c>Z0</c>).</param>
public sealed record TraceBreakpoint(ulong Address, string Label, bool Hardware)
{
    /// <summary>Breakpoint, or which accesses a watchpoint reports.</summary>
    public TraceEventKind Kind { get; init; } = TraceEventKind.Breakpoint;

    /// <summary>Bytes watched (1 for a breakpoint).</summary>
    public int Length { get; init; } = 1;

    /// <summary>Only hits that match reach the handler (null: all).</summary>
    public TraceHitFilter? Filter { get; init; }

    /// <summary>Hits handled so far (filtered-out hits not counted).</summary>
    public long Hits { get; internal set; }

    /// <summary>Hits that the filter turned away.</summary>
    public long Filtered { get; internal set; }

    /// <summary>False once removed.</summary>
    public bool Active { get; internal set; } = true;

    /// <summary>
    /// The length of the no-op instruction at a breakpoint's address (the 5-byte ftrace <c>nopl</c> every traceable
    /// kernel function starts with, <c>endbr64</c>, <c>nop</c>), which the session steps over by moving RIP past it
    /// instead of single-stepping the vCPU; 0 when it single-steps.
    /// </summary>
    public int SkipLength { get; internal set; }

    internal byte[]? Instruction { get; set; }

    internal Func<BreakpointHit, ValueTask<TraceAction>>? Handler { get; init; }

    internal Func<ulong, Memory<byte>, int>? Reader { get; init; }

    internal byte[]? LastValue { get; set; }

    /// <summary>The gdb packet type: 0 software, 1 hardware, 2 write, 3 read, 4 access watchpoint.</summary>
    internal int PacketType => Kind switch
    {
        TraceEventKind.WriteWatch => 2,
        TraceEventKind.ReadWatch => 3,
        TraceEventKind.AccessWatch => 4,
        _ => Hardware ? 1 : 0,
    };
}

/// <summary>What a <see cref="TraceBreakpoint"/> reports.</summary>
public enum TraceEventKind
{
    /// <summary>Execution of the instruction at the address.</summary>
    Breakpoint,

    /// <summary>Writes to the watched bytes (gdb <c>Z2</c>).</summary>
    WriteWatch,

    /// <summary>Reads of the watched bytes (gdb <c>Z3</c>).</summary>
    ReadWatch,

    /// <summary>Reads and writes of the watched bytes (gdb <c>Z4</c>).</summary>
    AccessWatch,
}

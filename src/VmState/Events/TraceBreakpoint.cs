namespace VmState.Events;

/// <summary>A breakpoint set by a <see cref="GdbTraceSession"/>.</summary>
/// <param name="Address">The guest-virtual address.</param>
/// <param name="Label">What the user asked for (<c>do_sys_open</c>, <c>vfs_read+0x10</c>, an address).</param>
/// <param name="Hardware">True for a hardware breakpoint (gdb <c>Z1</c>), false for a software one (<c>Z0</c>).</param>
public sealed record TraceBreakpoint(ulong Address, string Label, bool Hardware)
{
    /// <summary>Hits so far.</summary>
    public long Hits { get; internal set; }

    /// <summary>False once removed.</summary>
    public bool Active { get; internal set; } = true;
}

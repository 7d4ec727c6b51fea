namespace VmState.Events;

/// <summary>What a breakpoint handler wants after a hit.</summary>
public enum TraceAction
{
    /// <summary>Step over the breakpoint and let the VM run on.</summary>
    Continue,

    /// <summary>Remove this breakpoint and let the VM run on (the trace ends when none is left).</summary>
    Remove,

    /// <summary>
    /// Stay stopped: <see cref="GdbTraceSession.Run(Func{BreakpointHit, TraceAction}?, long?, TimeSpan?, CancellationToken)"/>
    /// returns with the VM stopped at this hit, to be inspected; a later Run steps over the breakpoint and carries
    /// on, and disposing the session removes every breakpoint and resumes the VM.
    /// </summary>
    Stop,
}

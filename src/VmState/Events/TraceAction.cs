namespace VmState.Events;

/// <summary>What a breakpoint handler wants after a hit.</summary>
public enum TraceAction
{
    /// <summary>Step over the breakpoint and let the VM run on.</summary>
    Continue,

    /// <summary>Remove this breakpoint and let the VM run on (the trace ends when none is left).</summary>
    Remove,

    /// <summary>End the trace: every breakpoint is removed and the VM resumed.</summary>
    Stop,
}

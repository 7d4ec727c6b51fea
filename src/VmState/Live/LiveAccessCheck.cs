namespace VmState.Live;

/// <summary>One way of reading a running VM, as <see cref="LiveAccessProbe"/> found it.</summary>
/// <param name="Path">The way: <c>QMP</c>, <c>shared memory</c>, <c>process memory</c>, <c>gdbstub</c>, <c>QMP xp</c>.</param>
/// <param name="Works">Whether it works for this VM from this process.</param>
/// <param name="Detail">What was found (versions, backends, the error).</param>
/// <param name="Fix">How to enable it, or null when it works or nothing can be suggested.</param>
public sealed record LiveAccessCheck(string Path, bool Works, string Detail, string? Fix);

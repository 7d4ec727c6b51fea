namespace VmState.Formats.Qcow2;

/// <summary>An entry of a qcow2 image's internal snapshot table (QEMU 7.2 <c>docs/interop/qcow2.txt</c>).</summary>
public sealed record Qcow2Snapshot(
    string Id,
    string Name,
    DateTimeOffset Date,
    ulong VmClockNanoseconds,
    ulong VmStateSize,
    ulong DiskSize,
    ulong L1TableOffset,
    uint L1Size,
    long TableOffset);

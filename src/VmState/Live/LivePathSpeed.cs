namespace VmState.Live;

/// <summary>One memory path of a running VM as <see cref="LiveAccessProbe.MeasureAsync"/> measured it.</summary>
/// <param name="Path">The path: <c>shared memory</c>, <c>process memory</c> or <c>QMP</c> (pmemsave).</param>
/// <param name="ReadLatency">Mean time of one random 8-byte read.</param>
/// <param name="BytesPerSecond">Sequential bulk reads (4 MiB each), in bytes per second.</param>
/// <param name="Reads">Random reads made for <paramref name="ReadLatency"/>.</param>
/// <param name="BulkBytes">Bytes read for <paramref name="BytesPerSecond"/>.</param>
public sealed record LivePathSpeed(string Path, TimeSpan ReadLatency, double BytesPerSecond, long Reads, long BulkBytes);

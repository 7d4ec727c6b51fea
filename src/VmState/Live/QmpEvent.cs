using System.Text.Json;

namespace VmState.Live;

/// <summary>An asynchronous QMP event (e.g. STOP, RESUME, MIGRATION).</summary>
/// <param name="Name">Event name.</param>
/// <param name="Data">The "data" member (a JSON object, or undefined when absent).</param>
/// <param name="Timestamp">QEMU's timestamp.</param>
public sealed record QmpEvent(string Name, JsonElement Data, DateTimeOffset Timestamp);

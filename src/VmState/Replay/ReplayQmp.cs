using System.Text.Json;
using System.Text.Json.Nodes;
using VmState.Live;

namespace VmState.Replay;

/// <summary>QEMU's record/replay QMP commands (QEMU 7.2 <c>qapi/replay.json</c>, since 5.2).</summary>
public static class ReplayQmp
{
    /// <summary>The current instruction count (<c>query-replay</c> "icount").</summary>
    /// <exception cref="QmpException">QEMU refused (it is not recording or replaying).</exception>
    public static async Task<ulong> IcountAsync(QmpClient qmp, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        JsonElement r = await qmp.ExecuteAsync("query-replay", null, null, cancellationToken).ConfigureAwait(false);
        return r.TryGetProperty("icount", out JsonElement i) && i.TryGetUInt64(out ulong v)
            ? v
            : throw new IOException($"query-replay answered without an icount: {r}");
    }

    /// <summary>Sets the replay breakpoint (one at a time): the VM stops when the instruction count reaches <paramref name="icount"/>.</summary>
    public static Task BreakAsync(QmpClient qmp, ulong icount, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        return qmp.ExecuteAsync("replay-break", new JsonObject { ["icount"] = icount }, null, cancellationToken);
    }

    /// <summary>Removes the replay breakpoint.</summary>
    public static Task DeleteBreakAsync(QmpClient qmp, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(qmp);
        return qmp.ExecuteAsync("replay-delete-break", null, null, cancellationToken);
    }
}

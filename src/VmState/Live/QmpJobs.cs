using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace VmState.Live;

/// <summary>QEMU's background jobs (<c>snapshot-save</c>, <c>snapshot-load</c>, …) seen through QMP.</summary>
internal static class QmpJobs
{
    /// <summary>
    /// Waits until the job <paramref name="id"/> concluded (polling <c>query-jobs</c>), dismisses it and returns its
    /// error, or null when it succeeded.
    /// </summary>
    /// <exception cref="IOException">The job did not conclude within <paramref name="limit"/>, or QEMU no longer lists it.</exception>
    public static async Task<string?> WaitAsync(QmpClient qmp, string id, TimeSpan limit, CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        int delay = 2;
        while (true)
        {
            JsonElement jobs = await qmp.ExecuteAsync("query-jobs", cancellationToken: cancellationToken).ConfigureAwait(false);
            bool listed = false;
            foreach (JsonElement job in jobs.EnumerateArray())
            {
                if (job.GetProperty("id").GetString() != id)
                {
                    continue;
                }

                listed = true;
                if (job.GetProperty("status").GetString() != "concluded")
                {
                    continue;
                }

                string? error = job.TryGetProperty("error", out JsonElement e) ? e.GetString() : null;
                await qmp.ExecuteAsync("job-dismiss", new JsonObject { ["id"] = id }, cancellationToken: cancellationToken).ConfigureAwait(false);
                return error;
            }

            if (!listed)
            {
                throw new IOException($"QEMU no longer lists its job {id}");
            }

            if (clock.Elapsed > limit)
            {
                throw new IOException(string.Create(CultureInfo.InvariantCulture, $"QEMU's job {id} did not conclude within {limit.TotalSeconds:F0} s"));
            }

            // Short first (a snapshot of a small guest takes a fraction of a second), then at most every 20 ms.
            await Task.Delay(delay, cancellationToken).ConfigureAwait(false);
            delay = Math.Min(20, delay * 2);
        }
    }
}

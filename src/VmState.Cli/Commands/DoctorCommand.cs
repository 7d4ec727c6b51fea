using System.CommandLine;
using System.Text.Json;
using VmState.Live;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate doctor (--qmp PATH | --libvirt URI --domain NAME)</c>: which ways of reading a running VM's memory work, how to enable the others, and
/// what each that works gives (random-read latency and bulk bandwidth, measured in a one-second probe).
/// </summary>
internal static class DoctorCommand
{
    public static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var command = new Command("doctor", "Check which live memory paths work for a running QEMU, and how to enable the others");
        var target = new LiveOptions(command, new Option<string?>("--qmp") { Description = "QEMU's QMP unix socket" });
        command.Options.Add(json);
        command.SetAction(async (r, ct) =>
        {
            IReadOnlyList<LiveAccessCheck> checks;
            QmpClient client;
            try
            {
                client = await target.Require(r, "doctor").ConnectAsync(TimeSpan.FromSeconds(10), ct);
            }
            catch (Exception e) when (e is IOException or LiveVmGoneException or TimeoutException or VmStateNotFoundException or ArgumentException)
            {
                Console.Error.WriteLine($"vmstate: {e.Message}");
                return 1;
            }

            IReadOnlyList<LivePathSpeed> speeds = [];
            string? probeFailed = null;
            await using (client)
            {
                checks = await LiveAccessProbe.CheckAsync(client, ct);
                try
                {
                    // The one-second probe: what each path that works gives this VM from here.
                    await using LiveMachine live = await LiveMachine.AttachAsync(client, ownsClient: false, ct);
                    speeds = await LiveAccessProbe.MeasureAsync(live, null, ct);
                }
                catch (Exception e) when (e is IOException or QmpException or LiveVmGoneException or TimeoutException)
                {
                    probeFailed = e.Message;
                }
            }

            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    w.WriteStartArray();
                    foreach (LiveAccessCheck c in checks)
                    {
                        w.WriteStartObject();
                        w.WriteString("path", c.Path);
                        w.WriteBoolean("works", c.Works);
                        w.WriteString("detail", c.Detail);
                        w.WriteString("fix", c.Fix);
                        if (speeds.FirstOrDefault(m => m.Path == c.Path) is LivePathSpeed speed)
                        {
                            w.WriteStartObject("measured");
                            w.WriteNumber("readLatencyNs", Math.Round(speed.ReadLatency.TotalNanoseconds, 1));
                            w.WriteNumber("bytesPerSecond", Math.Round(speed.BytesPerSecond));
                            w.WriteNumber("reads", speed.Reads);
                            w.WriteNumber("bulkBytes", speed.BulkBytes);
                            w.WriteEndObject();
                        }

                        w.WriteEndObject();
                    }

                    w.WriteEndArray();
                });
            }
            else
            {
                foreach (LiveAccessCheck c in checks)
                {
                    Console.WriteLine($"{(c.Works ? "ok  " : "no  ")} {c.Path,-15} {c.Detail}");
                    if (c.Fix is not null)
                    {
                        Console.WriteLine($"     {string.Empty,-15} fix: {c.Fix}");
                    }
                }

                Console.WriteLine();
                Console.WriteLine(probeFailed is null ? "measured (one-second probe):" : $"not measured: {probeFailed}");
                foreach (LivePathSpeed m in speeds)
                {
                    Console.WriteLine($"     {(m.Path == "QMP" ? "QMP pmemsave" : m.Path),-15} random 8-byte read {Latency(m.ReadLatency),9}   bulk (4 MiB reads) {Bandwidth(m.BytesPerSecond),11}");
                }
            }

            return LiveAccessProbe.CanReadMemory(checks) ? 0 : 1;
        });
        return command;
    }

    private static string Latency(TimeSpan t) => t.TotalNanoseconds switch
    {
        < 1000 => $"{t.TotalNanoseconds:F0} ns",
        < 1_000_000 => $"{t.TotalNanoseconds / 1000:F1} µs",
        _ => $"{t.TotalMilliseconds:F2} ms",
    };

    private static string Bandwidth(double bytesPerSecond) => bytesPerSecond >= 1e9 ? $"{bytesPerSecond / 1e9:F2} GB/s" : $"{bytesPerSecond / 1e6:F1} MB/s";
}

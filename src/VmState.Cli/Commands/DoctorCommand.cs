using System.CommandLine;
using System.Text.Json;
using VmState.Live;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate doctor --qmp PATH</c>: which ways of reading a running VM's memory work, and how to enable the others.</summary>
internal static class DoctorCommand
{
    public static Command Create()
    {
        var qmp = new Option<string>("--qmp") { Description = "QEMU's QMP unix socket", Required = true };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("doctor", "Check which live memory paths work for a running QEMU, and how to enable the others");
        command.Options.Add(qmp);
        command.Options.Add(json);
        command.SetAction(async (r, ct) =>
        {
            IReadOnlyList<LiveAccessCheck> checks;
            QmpClient client;
            try
            {
                client = await QmpClient.ConnectAsync(r.GetValue(qmp)!, TimeSpan.FromSeconds(10), ct);
            }
            catch (Exception e) when (e is IOException or LiveVmGoneException or TimeoutException)
            {
                Console.Error.WriteLine($"vmstate: {e.Message}");
                return 1;
            }

            await using (client)
            {
                checks = await LiveAccessProbe.CheckAsync(client, ct);
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
            }

            return LiveAccessProbe.CanReadMemory(checks) ? 0 : 1;
        });
        return command;
    }
}

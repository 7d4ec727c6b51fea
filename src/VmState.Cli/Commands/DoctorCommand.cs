using System.CommandLine;
using System.Text.Json;
using VmState.Live;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate doctor --qmp PATH</c>: which ways of reading a running VM's memory work, and how to enable the others.</summary>
internal static class DoctorCommand
{
    private sealed record Check(string Path, bool Works, string Detail, string? Fix);

    public static Command Create()
    {
        var qmp = new Option<string>("--qmp") { Description = "QEMU's QMP unix socket", Required = true };
        Option<bool> json = CommonOptions.Json();
        var command = new Command("doctor", "Check which live memory paths work for a running QEMU, and how to enable the others");
        command.Options.Add(qmp);
        command.Options.Add(json);
        command.SetAction(async (r, ct) =>
        {
            var checks = new List<Check>();
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
                checks.Add(new Check("QMP", true, $"QEMU {client.Version.Major}.{client.Version.Minor}.{client.Version.Micro} ({client.Package})", null));
                (Dictionary<string, string> shared, List<string> notes) = await LiveMachine.FindSharedBackendsAsync(client, ct);
                checks.Add(shared.Count > 0
                    ? new Check("shared memory", true, string.Join(", ", shared.Select(kv => $"{kv.Key} = {kv.Value}")), null)
                    : new Check("shared memory", false, string.Join("; ", notes), "start QEMU with -object memory-backend-file,id=pc.ram,size=SIZE,mem-path=/dev/shm/NAME,share=on -machine memory-backend=pc.ram"));

                int? pid = client.PeerProcessId;
                if (pid is null)
                {
                    checks.Add(new Check("process memory", false, "cannot tell QEMU's pid from the socket (SO_PEERCRED)", "run vmstate on the same host as QEMU"));
                }
                else
                {
                    try
                    {
                        await using LiveMachine live = await LiveMachine.AttachAsync(client, ownsClient: false, ct);
                        checks.Add(new Check("process memory", true, $"pid {pid}: {live.Memory.Ranges.Count} RAM ranges via gpa2hva + process_vm_readv", null));
                    }
                    catch (IOException e)
                    {
                        checks.Add(new Check("process memory", false, e.Message, "run as root, or as QEMU's user with kernel.yama.ptrace_scope=0 (or grant CAP_SYS_PTRACE)"));
                    }
                }

                (string Host, int Port)? gdb = pid is int p ? GdbstubMemory.FromCommandLine(p) : null;
                checks.Add(new Check("gdbstub", gdb is not null,
                    gdb is (string h, int port) ? $"QEMU's gdbstub at {h}:{port} (used when neither process memory nor pmemsave works; stops the guest around each access, ~0.75 ms a read)" : "no gdbstub on QEMU's command line",
                    gdb is null ? "add -gdb tcp:127.0.0.1:1234 (a gdbstub started later with HMP gdbserver is not seen)" : null));
                try
                {
                    string xp = await client.HumanMonitorCommandAsync("xp /1xg 0x100000", null, ct);
                    checks.Add(new Check("QMP xp", xp.Contains(':', StringComparison.Ordinal), xp.Trim(), null));
                }
                catch (QmpException e)
                {
                    checks.Add(new Check("QMP xp", false, e.Message, null));
                }
            }

            if (r.GetValue(json))
            {
                using var w = new Utf8JsonWriter(Console.OpenStandardOutput(), new JsonWriterOptions { Indented = true });
                w.WriteStartArray();
                foreach (Check c in checks)
                {
                    w.WriteStartObject();
                    w.WriteString("path", c.Path);
                    w.WriteBoolean("works", c.Works);
                    w.WriteString("detail", c.Detail);
                    w.WriteString("fix", c.Fix);
                    w.WriteEndObject();
                }

                w.WriteEndArray();
                w.Flush();
                Console.WriteLine();
            }
            else
            {
                foreach (Check c in checks)
                {
                    Console.WriteLine($"{(c.Works ? "ok  " : "no  ")} {c.Path,-15} {c.Detail}");
                    if (c.Fix is not null)
                    {
                        Console.WriteLine($"     {string.Empty,-15} fix: {c.Fix}");
                    }
                }
            }

            return checks.Any(c => c.Works && c.Path is "shared memory" or "process memory") ? 0 : 1;
        });
        return command;
    }
}

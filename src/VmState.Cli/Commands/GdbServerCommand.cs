using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using VmState.Gdb;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate gdbserver SNAPSHOT --port N</c>: serve a snapshot to gdb (target remote :N).</summary>
internal static class GdbServerCommand
{
    public static Command Create()
    {
        Argument<string> input = CommonOptions.SnapshotArgument();
        var port = new Option<int>("--port", "-p") { Description = "TCP port (0 picks a free one and prints it)", DefaultValueFactory = _ => 1234 };
        var listen = new Option<string>("--listen") { Description = "address to listen on (default loopback only)", DefaultValueFactory = _ => "127.0.0.1" };
        var once = new Option<bool>("--once") { Description = "exit when the first gdb connection ends" };
        var phys = new Option<bool>("--phys") { Description = "start with guest-physical memory addresses (monitor phys on)" };
        Option<string?> snapshot = CommonOptions.SnapshotName();
        var command = new Command("gdbserver", "Serve a snapshot over the GDB remote protocol (registers, memory, writes, monitor save)");
        command.Arguments.Add(input);
        command.Options.Add(port);
        command.Options.Add(listen);
        command.Options.Add(once);
        command.Options.Add(phys);
        command.Options.Add(snapshot);
        command.SetAction(async (r, ct) =>
        {
            try
            {
                using MachineState m = SnapshotLoader.Open(r.GetValue(input)!, CommonOptions.OpenOptions(r.GetValue(snapshot), false) with { CacheReads = true });
                var server = new GdbRemoteServer(m, Console.Error) { PhysicalMode = r.GetValue(phys) };
                if (!IPAddress.TryParse(r.GetValue(listen), out IPAddress? address))
                {
                    throw new ArgumentException($"--listen {r.GetValue(listen)} is not an IP address");
                }

                var listener = new TcpListener(address, r.GetValue(port));
                listener.Start();
                int actual = ((IPEndPoint)listener.LocalEndpoint).Port;
                Console.WriteLine($"vmstate gdbserver: {m.SourcePath} ({m.Cpus.Count} vCPUs as threads) on {address}:{actual}; in gdb: target remote {address}:{actual}");
                Console.Out.Flush();
                try
                {
                    while (!ct.IsCancellationRequested)
                    {
                        using TcpClient client = await listener.AcceptTcpClientAsync(ct);
                        client.NoDelay = true;
                        Console.Error.WriteLine($"gdbserver: connection from {client.Client.RemoteEndPoint}");
                        await server.ServeAsync(client.GetStream(), ct);
                        Console.Error.WriteLine("gdbserver: connection closed");
                        if (r.GetValue(once) || server.KillRequested)
                        {
                            break;
                        }
                    }
                }
                finally
                {
                    listener.Stop();
                }

                return 0;
            }
            catch (OperationCanceledException)
            {
                return 0;
            }
            catch (Exception e) when (e is ArgumentException or IOException or SocketException or FormatException)
            {
                Console.Error.WriteLine($"vmstate: {e.Message}");
                return e is SocketException or IOException ? 1 : 2;
            }
        });
        return command;
    }
}

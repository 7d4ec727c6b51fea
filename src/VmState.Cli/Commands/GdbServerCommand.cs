using System.CommandLine;
using System.Net;
using System.Net.Sockets;
using VmState.Export;
using VmState.Gdb;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate gdbserver SNAPSHOT --port N [--save-dir DIR] [--listen ADDR --token TOKEN]</c>: serve a snapshot to gdb (target remote :N).</summary>
internal static class GdbServerCommand
{
    public static Command Create()
    {
        Argument<string> input = CommonOptions.SnapshotArgument();
        var port = new Option<int>("--port", "-p") { Description = "TCP port (0 picks a free one and prints it)", DefaultValueFactory = _ => 1234 };
        var listen = new Option<string>("--listen")
        {
            Description = "address to listen on (default 127.0.0.1, loopback only); any other address needs --token, since a client can read all guest memory",
            DefaultValueFactory = _ => "127.0.0.1",
        };
        var token = new Option<string?>("--token")
        {
            Description = "secret a client must give with 'monitor auth TOKEN' before anything else (required beyond loopback; "
                + "the environment variable VMSTATE_GDB_TOKEN keeps it out of the process list)",
        };
        var saveDir = new Option<string?>("--save-dir") { Description = "directory where 'monitor save NAME' writes NAME (a bare file name); without it saving is disabled" };
        var allowOverwrite = new Option<bool>("--allow-overwrite") { Description = "let 'monitor save' replace an existing file in --save-dir (never the snapshot being served)" };
        var idle = new Option<int>("--idle-timeout") { Description = "disconnect a client that sends nothing for this many seconds", DefaultValueFactory = _ => 600 };
        var once = new Option<bool>("--once") { Description = "exit when the first gdb connection ends" };
        var phys = new Option<bool>("--phys") { Description = "start with guest-physical memory addresses (monitor phys on)" };
        Option<string?> snapshot = CommonOptions.SnapshotName();
        Option<string?> mainRam = CommonOptions.MainRam();
        var command = new Command(
            "gdbserver",
            "Serve a snapshot over the GDB remote protocol (registers, memory, writes, monitor save). One client at a time; "
            + "listens on loopback unless --listen says otherwise, and then requires --token.");
        command.Arguments.Add(input);
        command.Options.Add(port);
        command.Options.Add(listen);
        command.Options.Add(token);
        command.Options.Add(saveDir);
        command.Options.Add(allowOverwrite);
        command.Options.Add(idle);
        command.Options.Add(once);
        command.Options.Add(phys);
        command.Options.Add(snapshot);
        command.Options.Add(mainRam);
        var indexCache = new IndexCacheOptions(command);
        command.SetAction(async (r, ct) =>
        {
            try
            {
                if (!IPAddress.TryParse(r.GetValue(listen), out IPAddress? address))
                {
                    throw new ArgumentException($"--listen {r.GetValue(listen)} is not an IP address");
                }

                string? secret = r.GetValue(token) ?? Environment.GetEnvironmentVariable("VMSTATE_GDB_TOKEN");
                if (GdbServerOptions.CheckListen(address, secret) is string refused)
                {
                    throw new ArgumentException(refused);
                }

                if (r.GetValue(idle) <= 0)
                {
                    throw new ArgumentException("--idle-timeout must be a positive number of seconds");
                }

                string path = r.GetValue(input)!;
                using Vm vm = Vm.Open(path, CommonOptions.VmOptions(r.GetValue(snapshot), raw: false, cacheReads: true, mainRam: r.GetValue(mainRam), indexCache: indexCache.Get(r)));
                MachineState m = vm.Machine;
                var options = new GdbServerOptions
                {
                    SaveDirectory = r.GetValue(saveDir) is string dir ? new SaveDirectory(dir, r.GetValue(allowOverwrite), path) : null,
                    Token = secret,
                    IdleTimeout = TimeSpan.FromSeconds(r.GetValue(idle)),
                };
                var server = new GdbRemoteServer(m, Console.Error, options) { PhysicalMode = r.GetValue(phys) };
                var listener = new TcpListener(address, r.GetValue(port));
                listener.Start();
                int actual = ((IPEndPoint)listener.LocalEndpoint).Port;
                if (!GdbServerOptions.IsLoopback(address))
                {
                    Console.Error.WriteLine($"vmstate gdbserver: warning: listening on {address}, beyond loopback; clients must run 'monitor auth TOKEN' first, and the traffic (guest memory) is not encrypted");
                }

                Console.WriteLine($"vmstate gdbserver: {m.SourcePath} ({m.Vcpus.Count} vCPUs as threads) on {address}:{actual}; in gdb: target remote {address}:{actual}"
                    + (options.SaveDirectory is null ? string.Empty : $"; monitor save NAME writes into {options.SaveDirectory.Path}"));
                Console.Out.Flush();
                try
                {
                    await server.ListenAsync(listener, r.GetValue(once), ct);
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
            catch (Exception e) when (e is VmStateException or ArgumentException or IOException or SocketException or FormatException)
            {
                Console.Error.WriteLine($"vmstate: {e.Message}");
                return e is SocketException or IOException ? 1 : 2;
            }
        });
        return command;
    }
}

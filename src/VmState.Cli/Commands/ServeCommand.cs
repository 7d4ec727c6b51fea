using System.CommandLine;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using VmState.Cli.Web;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate serve [SOURCES…] [--qmp SOCK…] [--libvirt URI [--domain NAME…]] [--store DIR…]</c>: the web dashboard
/// and JSON API (<see cref="WebServer"/>) until Ctrl-C, SIGTERM or SIGHUP.
/// </summary>
internal static class ServeCommand
{
    public static Command Create()
    {
        var sources = new Argument<string[]>("SOURCES") { Description = "snapshot files (migration streams, virsh save files, qcow2 images, ELF cores)", Arity = ArgumentArity.ZeroOrMore };
        var qmp = new Option<string[]>("--qmp") { Description = "a running QEMU's QMP socket (repeat for more)", Arity = ArgumentArity.OneOrMore, AllowMultipleArgumentsPerToken = false };
        var libvirt = new Option<string?>("--libvirt") { Description = "a libvirt URI (e.g. qemu:///system): every running (or paused) domain, or those --domain names" };
        var domain = new Option<string[]>("--domain") { Description = "with --libvirt: a running domain's name or UUID (repeat for more; none: every active domain)", Arity = ArgumentArity.OneOrMore };
        var store = new Option<string[]>("--store") { Description = "a history store directory: its timeline (repeat for more)", Arity = ArgumentArity.OneOrMore };
        var port = new Option<int>("--port") { Description = "TCP port (0: any free port)", DefaultValueFactory = _ => 8417 };
        var bind = new Option<string>("--bind") { Description = "address to listen on; anything but loopback needs --token", DefaultValueFactory = _ => "127.0.0.1" };
        var token = new Option<string?>("--token") { Description = "the token every request must carry (Authorization: Bearer, or ?token= once in the browser); 'generate' makes one" };
        var allowWrites = new Option<bool>("--allow-writes") { Description = "allow memory writes to running VMs through the API (off: the server only reads, and pauses/resumes)" };
        var allowTrace = new Option<bool>("--allow-trace") { Description = "allow live event streams on running VMs (/s/N/events): traces that insert breakpoints into the guest through QEMU's gdbstub" };
        var command = new Command("serve", "Serve a web dashboard and JSON API over snapshots, running VMs and history stores");
        command.Arguments.Add(sources);
        command.Options.Add(qmp);
        command.Options.Add(libvirt);
        command.Options.Add(domain);
        command.Options.Add(store);
        command.Options.Add(port);
        command.Options.Add(bind);
        command.Options.Add(token);
        command.Options.Add(allowWrites);
        command.Options.Add(allowTrace);
        var snapshot = CommonOptions.SnapshotName();
        var raw = CommonOptions.Raw();
        command.Options.Add(snapshot);
        command.Options.Add(raw);
        var kernel = new KernelOptions(command);
        var indexCache = new IndexCacheOptions(command);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            var specs = new List<WebSourceSpec>();
            specs.AddRange((r.GetValue(sources) ?? []).Select(s => new WebSourceSpec(WebSourceKind.Snapshot, s)));
            specs.AddRange((r.GetValue(qmp) ?? []).Select(s => new WebSourceSpec(WebSourceKind.Qmp, s)));
            string? uri = r.GetValue(libvirt);
            string[] domains = r.GetValue(domain) ?? [];
            if (uri is null && domains.Length > 0)
            {
                throw new ArgumentException("--domain needs --libvirt URI");
            }

            if (uri is not null)
            {
                specs.AddRange(domains.Length > 0 ? domains.Select(d => new WebSourceSpec(WebSourceKind.Libvirt, uri, d)) : ActiveDomains(uri));
            }

            specs.AddRange((r.GetValue(store) ?? []).Select(s => new WebSourceSpec(WebSourceKind.Store, s)));
            if (specs.Count == 0)
            {
                throw new ArgumentException("give at least one source: a snapshot file, --qmp SOCKET, --libvirt URI [--domain NAME] or --store DIR");
            }

            if (!IPAddress.TryParse(r.GetValue(bind), out IPAddress? address))
            {
                throw new ArgumentException($"--bind {r.GetValue(bind)}: not an IP address (e.g. 127.0.0.1, ::1, 0.0.0.0)");
            }

            int p = r.GetValue(port);
            if (p is < 0 or > 65535)
            {
                throw new ArgumentException($"--port {p}: expected 0 to 65535");
            }

            string? t = r.GetValue(token);
            if (t == "generate" || (t is null && !IPAddress.IsLoopback(address)))
            {
                t = Convert.ToBase64String(RandomNumberGenerator.GetBytes(24)).Replace('+', '-').Replace('/', '_');
            }

            var kernelOptions = kernel.Get(r);
            var cache = indexCache.Get(r);
            var options = new WebServerOptions
            {
                Sources = specs,
                Bind = address,
                Port = p,
                Token = t,
                AllowWrites = r.GetValue(allowWrites),
                AllowTrace = r.GetValue(allowTrace),
                OpenFile = path => Vm.Open(path, CommonOptions.VmOptions(r.GetValue(snapshot), r.GetValue(raw), cacheReads: true, kernelOptions, indexCache: cache)),
                Attach = new VmAttachOptions
                {
                    Kernel = kernelOptions,
                    ResumeFailed = e => Console.Error.WriteLine($"vmstate: warning: could not resume the guest: {e.Message}"),
                },
            };
            return Serve(options);
        }));
        return command;
    }

    /// <summary>
    /// The active domains (running or paused: a QEMU process to attach to) of <paramref name="uri"/>, one source each;
    /// when the URI cannot be listed or has none, one source holding that error (the other sources are still served).
    /// </summary>
    private static IEnumerable<WebSourceSpec> ActiveDomains(string uri)
    {
        try
        {
            using var connection = VmState.Live.LibvirtConnection.Open(uri, readOnly: true);
            var active = connection.ListDomains().Where(d => d.Id is not null).Select(d => new WebSourceSpec(WebSourceKind.Libvirt, uri, d.Name)).ToList();
            return active.Count > 0 ? active : [new WebSourceSpec(WebSourceKind.Libvirt, uri, Problem: $"libvirt at {uri} has no running domain (vmstate list --libvirt {uri} shows its domains)")];
        }
        catch (Exception e) when (e is VmStateException or IOException or DllNotFoundException or InvalidOperationException)
        {
            return [new WebSourceSpec(WebSourceKind.Libvirt, uri, Problem: WebErrors.Describe(e))];
        }
    }

    private static int Serve(WebServerOptions options)
    {
        using var stop = new CancellationTokenSource();
        using PosixSignalRegistration sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using PosixSignalRegistration sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using PosixSignalRegistration sighup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, Stop);
        WebServer server = WebServer.StartAsync(options, stop.Token).GetAwaiter().GetResult();
        try
        {
            foreach (WebSource s in server.Sources)
            {
                Console.Error.WriteLine(s.Error is null
                    ? $"source {s.Index}: {TerminalText.Escape(s.Spec.Describe())}"
                    : $"source {s.Index}: {TerminalText.Escape(s.Spec.Describe())}: could not open: {TerminalText.Escape(s.Error)}");
            }

            string url = options.Token is null ? server.Url.ToString() : $"{server.Url}?token={Uri.EscapeDataString(options.Token)}";
            Console.WriteLine($"vmstate serve: listening on {url}");
            Console.Out.Flush();
            Console.Error.WriteLine("Ctrl-C stops the server (guests it paused are resumed)");
            server.RunUntilCancelledAsync(stop.Token).GetAwaiter().GetResult();
        }
        finally
        {
            server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }

        return 0;

        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            stop.Cancel();
        }
    }
}

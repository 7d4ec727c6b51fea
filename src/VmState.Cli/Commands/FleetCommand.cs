using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using VmState.IO;
using VmState.Live;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate fleet snapshot (--qmp SOCK ... | --libvirt URI (--domain NAME ... | --all)) -o DIR [--live] [--json]</c>:
/// a consistent cut across many running VMs (<see cref="FleetSnapshot"/>), a snapshot per VM and a manifest
/// (<c>fleet.json</c>) with each VM's stop time and pause and the cut's skew.
/// </summary>
internal static class FleetCommand
{
    public static Command Create()
    {
        var fleet = new Command("fleet", "Work on many running VMs at once");
        var qmp = new Option<string[]>("--qmp") { Description = "a VM's QMP socket (repeat for each VM)", AllowMultipleArgumentsPerToken = false };
        var libvirt = new Option<string[]>("--libvirt") { Description = "a libvirt URI (repeat for several hosts); its VMs are named with --domain or --all" };
        var domain = new Option<string[]>("--domain") { Description = "a libvirt domain (repeat); with several --libvirt URIs write NAME@URI" };
        var all = new Option<bool>("--all") { Description = "every running domain of every --libvirt URI" };
        var output = new Option<string>("--output", "-o") { Description = "the output directory: NAME.mig for each VM and fleet.json", Required = true };
        var hostDir = new Option<string?>("--host-dir") { Description = "where VMs reached through a remote libvirt transport (+tcp, +tls, +ssh: no descriptor can be passed) save, on their own host: an absolute directory there (default: the -o directory's absolute path)" };
        var live = new Option<bool>("--live") { Description = "background snapshots: each VM runs again as soon as its devices are saved (RAM written copy-on-write as it was at the cut)" };
        Option<bool> json = CommonOptions.Json();
        json.Description = "print the manifest (fleet.json) on stdout";
        var snapshot = new Command("snapshot", "Stop many VMs at (nearly) the same moment, save each, run them all again; report the cut's skew and each VM's pause");
        foreach (Option o in new Option[] { qmp, libvirt, domain, all, output, hostDir, live, json })
        {
            snapshot.Options.Add(o);
        }

        snapshot.SetAction((r, ct) => RunAsync(r.GetValue(qmp) ?? [], r.GetValue(libvirt) ?? [], r.GetValue(domain) ?? [], r.GetValue(all), r.GetValue(output)!, r.GetValue(hostDir), r.GetValue(live), r.GetValue(json), ct));
        fleet.Subcommands.Add(snapshot);
        return fleet;
    }

    private static async Task<int> RunAsync(string[] sockets, string[] uris, string[] domains, bool all, string output, string? hostDirectory, bool live, bool json, CancellationToken ct)
    {
        List<(string Name, string Host, string Source, Func<Task<QmpClient>> Connect, Func<string, CancellationToken, Task>? SaveOnHost)> targets;
        try
        {
            targets = Targets(sockets, uris, domains, all);
        }
        catch (Exception e) when (e is ArgumentException or IOException or VmStateNotFoundException)
        {
            Console.Error.WriteLine($"vmstate: {e.Message}");
            return e is IOException ? 1 : 2;
        }

        var members = new List<FleetMember>();
        try
        {
            // One connection per VM, opened in parallel: the stops then go out concurrently.
            QmpClient[] clients = await Task.WhenAll(targets.Select(t => t.Connect()));
            members.AddRange(targets.Select((t, i) => new FleetMember(t.Name, clients[i], t.Host, t.Source) { SaveOnHost = t.SaveOnHost, HostDirectory = hostDirectory }));
        }
        catch (Exception e) when (e is IOException or LiveVmGoneException or TimeoutException or VmStateNotFoundException or QmpException)
        {
            Console.Error.WriteLine($"vmstate: {e.Message}");
            return 1;
        }

        try
        {
            FleetCut cut;
            try
            {
                cut = await FleetSnapshot.TakeAsync(members, output, live, ct);
            }
            catch (OperationCanceledException)
            {
                Console.Error.WriteLine("vmstate: cancelled; every VM that was running runs again");
                return 130;
            }
            catch (ArgumentException e)
            {
                Console.Error.WriteLine($"vmstate: {e.Message}");
                return 2;
            }

            string manifest = Path.Combine(output, "fleet.json");
            OutputFile.Write(manifest, OutputRules.None, s =>
            {
                using var w = new Utf8JsonWriter(s, new JsonWriterOptions { Indented = true });
                cut.WriteManifest(w);
            });
            if (json)
            {
                CommonOptions.WriteJson(cut.WriteManifest);
            }
            else
            {
                WriteText(cut, manifest);
            }

            return cut.Members.Any(m => m.Error is not null) ? 1 : 0;
        }
        finally
        {
            foreach (FleetMember m in members)
            {
                await m.Qmp.DisposeAsync();
            }
        }
    }

    private static void WriteText(FleetCut cut, string manifest)
    {
        DateTimeOffset? first = cut.Members.Where(m => m.StopTime is not null).Select(m => m.StopTime!.Value).DefaultIfEmpty().Min();
        Console.WriteLine($"{"VM",-24} {"HOST",-12} {"STOP +ms",9} {"PAUSE ms",9} {"MODE",-19} {"BYTES",14} FILE");
        foreach (FleetMemberResult m in cut.Members)
        {
            string stop = m.StopTime is DateTimeOffset s && first is DateTimeOffset f ? (s - f).TotalMilliseconds.ToString("F3", CultureInfo.InvariantCulture) : "-";
            string pause = m.Pause?.TotalMilliseconds.ToString("F1", CultureInfo.InvariantCulture) ?? "-";
            string file = m.File is null ? $"FAILED: {TerminalText.Escape(m.Error ?? "?")}" : m.SavedOnHost ? $"{TerminalText.Escape(m.File)} (on its host)" : TerminalText.Escape(Path.GetFileName(m.File));
            string bytes = m.SavedOnHost ? "-" : m.Bytes.ToString("N0", CultureInfo.InvariantCulture);
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{TerminalText.Escape(m.Name),-24} {TerminalText.Escape(m.Host),-12} {stop,9} {pause,9} {m.Mode,-19} {bytes,14} {file}"));
        }

        string skew = cut.Skew is TimeSpan k ? $"{k.TotalMilliseconds.ToString("F3", CultureInfo.InvariantCulture)} ms" : "n/a (fewer than two running VMs)";
        if (cut.Members.Select(m => m.Host).Distinct(StringComparer.Ordinal).Count() > 1 && cut.CorrectedSkew is TimeSpan c)
        {
            skew += $", {c.TotalMilliseconds.ToString("F3", CultureInfo.InvariantCulture)} ms with each host's measured clock offset taken out";
        }

        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"cut of {cut.Members.Count} VMs: skew {skew} (spread of QEMU's STOP timestamps), {cut.Elapsed.TotalSeconds:F2} s in all; manifest {TerminalText.Escape(manifest)}"));
    }

    private static List<(string Name, string Host, string Source, Func<Task<QmpClient>> Connect, Func<string, CancellationToken, Task>? SaveOnHost)> Targets(string[] sockets, string[] uris, string[] domains, bool all)
    {
        var targets = new List<(string Name, string Host, string Source, Func<Task<QmpClient>> Connect, Func<string, CancellationToken, Task>? SaveOnHost)>();
        if (sockets.Length + uris.Length == 0)
        {
            throw new ArgumentException("name the VMs: --qmp SOCKET (repeat), or --libvirt URI with --domain NAME (repeat) or --all");
        }

        if (uris.Length == 0 && (domains.Length > 0 || all))
        {
            throw new ArgumentException("--domain and --all need --libvirt URI");
        }

        if (uris.Length > 0 && domains.Length == 0 && !all)
        {
            throw new ArgumentException("--libvirt needs --domain NAME (repeat) or --all");
        }

        string[] stems = sockets.Select(s => Path.GetFileNameWithoutExtension(s)).ToArray();
        for (int i = 0; i < sockets.Length; i++)
        {
            string socket = Path.GetFullPath(sockets[i]);
            // Sockets are often all called qmp.sock: then their directory names them.
            string name = stems.Count(x => x == stems[i]) == 1 ? stems[i] : $"{Path.GetFileName(Path.GetDirectoryName(socket))}-{stems[i]}";
            targets.Add((FileName(name), "localhost", socket, () => QmpClient.ConnectAsync(socket, TimeSpan.FromSeconds(10)), null));
        }

        foreach (string uri in uris)
        {
            string host = LibvirtConnection.HostOf(uri);
            IEnumerable<string> names;
            if (all)
            {
                using LibvirtConnection c = LibvirtConnection.Open(uri, readOnly: true);
                names = c.ListDomains().Where(d => d.Id is not null).Select(d => d.Name).ToList();
            }
            else
            {
                names = domains.Select(d => DomainOf(d, uri, uris.Length)).OfType<string>().ToList();
            }

            foreach (string d in names)
            {
                string name = uris.Length == 1 ? d : $"{host}-{d}";
                // Over a remote transport no descriptor of ours reaches the VM's QEMU: it saves on its own host.
                Func<string, CancellationToken, Task>? saveOnHost = LibvirtConnection.CanPassDescriptors(uri) ? null : (path, token) => Task.Run(
                    () =>
                    {
                        using LibvirtConnection c = LibvirtConnection.Open(uri);
                        c.SaveMemoryOnHost(d, path);
                    },
                    token);
                targets.Add((FileName(name), host, $"libvirt {uri} domain {d}", () => QmpClient.ConnectLibvirtAsync(uri, d, TimeSpan.FromSeconds(10)), saveOnHost));
            }
        }

        if (targets.Count == 0)
        {
            throw new ArgumentException("no running VM matched");
        }

        return targets;
    }

    private static string FileName(string name) =>
        new(name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_').ToArray().AsSpan().TrimStart('.').ToArray());

    /// <summary>The domain a --domain value names on <paramref name="uri"/>: NAME@URI for that URI, or NAME when there is one URI; else null.</summary>
    private static string? DomainOf(string value, string uri, int uriCount)
    {
        if (value.EndsWith("@" + uri, StringComparison.Ordinal) && value.Length > uri.Length + 1)
        {
            return value[..^(uri.Length + 1)];
        }

        if (uriCount == 1)
        {
            return value;
        }

        return value.Contains("@", StringComparison.Ordinal) ? null : throw new ArgumentException($"--domain {value}: with several --libvirt URIs write NAME@URI");
    }
}

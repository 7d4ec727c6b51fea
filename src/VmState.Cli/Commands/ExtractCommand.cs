using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Spectre.Console;
using VmState.Arch.X86;
using VmState.Export;
using VmState.Formats.Elf;
using VmState.Machine;
using VmState.Memory;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary>
/// <c>vmstate extract SNAPSHOT -o DIR</c>: software state as <c>core.elf</c> (gdb/crash), hardware state as
/// <c>hardware.json</c> (and <c>hardware.xml</c> with --xml).
/// </summary>
internal static class ExtractCommand
{
    public static Command Create()
    {
        Argument<string?> input = CommonOptions.OptionalSnapshotArgument();
        var output = new Option<string>("--output", "-o") { Description = "output directory (created if missing)", Required = true };
        var xml = new Option<bool>("--xml") { Description = "also write hardware.xml" };
        var noKernelVaddr = new Option<bool>("--no-kernel-vaddr") { Description = "do not add PT_LOADs that map the kernel's virtual addresses (see docs/user-guide.md)" };
        var noScan = new Option<bool>("--no-vmcoreinfo-scan") { Description = "do not scan RAM for the guest's VMCOREINFO when QEMU's vmcoreinfo device has none" };
        Option<string?> snapshot = CommonOptions.SnapshotName();
        Option<bool> json = CommonOptions.Json();
        Option<bool> raw = CommonOptions.Raw();
        Option<string?> mainRam = CommonOptions.MainRam();
        var command = new Command("extract", "Write a snapshot's software state (core.elf) and hardware state (hardware.json)");
        command.Arguments.Add(input);
        var live = new LiveOptions(command);
        command.Options.Add(output);
        command.Options.Add(xml);
        command.Options.Add(noScan);
        command.Options.Add(noKernelVaddr);
        command.Options.Add(snapshot);
        command.Options.Add(json);
        command.Options.Add(raw);
        command.Options.Add(mainRam);
        var indexCache = new IndexCacheOptions(command);
        command.SetAction((r, ct) => Task.FromResult(CommonOptions.Run(() =>
            Run(r.GetValue(input), live.Get(r), r.GetValue(output)!, r.GetValue(xml), !r.GetValue(noScan), !r.GetValue(noKernelVaddr), r.GetValue(snapshot), r.GetValue(raw), r.GetValue(json), r.GetValue(mainRam), indexCache.Get(r), ct))));
        return command;
    }

    private static int Run(string? input, LiveTarget? live, string outputDir, bool xml, bool scan, bool kernelVaddr, string? snapshot, bool raw, bool json, string? mainRam, IndexCache? indexCache, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        IAnsiConsole err = TerminalText.CreateConsole(TerminalText.RawError, Console.IsErrorRedirected);
        bool interactive = !Console.IsErrorRedirected;
        // The outputs' temporaries come first: a migration stream's RAM goes into the core while the stream is parsed
        // (one read of the input). A running VM is paused while its state is written, so core and registers agree; it
        // is resumed after.
        using MachineExport.Session export = MachineExport.Begin(outputDir, input, xml);
        VmOpenOptions open = CommonOptions.VmOptions(snapshot, raw, cacheReads: false, mainRam: mainRam, indexCache: indexCache) with { RamObserver = input is null ? null : export.RamObserver };
        using Vm vm = CommonOptions.OpenVm(input, live, open, pause: true);
        MachineState m = vm.Machine;
        double parseSeconds = clock.Elapsed.TotalSeconds;
        (byte[] Note, string How)? vmcoreinfo = VmcoreinfoLocator.Find(m, scan, scan ? export.VmcoreinfoCandidates(m) : null);
        IReadOnlyList<VirtualMapping> kernelMappings = kernelVaddr ? CpuAddressSpaces.KernelMappings(m) : [];
        var options = new MachineExport.Options(xml, vmcoreinfo?.Note, kernelMappings);
        MachineExport.Result result;
        if (interactive)
        {
            result = err.Progress().AutoClear(true).Start(p =>
            {
                ProgressTask task = p.AddTask("writing core.elf", maxValue: 1.0);
                var progress = new SyncProgress<(long Done, long Total)>(x => task.Value = (double)x.Done / Math.Max(1, x.Total));
                return export.Finish(m, options, progress, ct);
            });
        }
        else
        {
            result = export.Finish(m, options, null, ct);
        }

        ElfCoreSummary summary = result.Core;
        string hardwarePath = result.HardwareJson;
        string? xmlPath = result.HardwareXml;
        double seconds = clock.Elapsed.TotalSeconds;
        ulong ram = m.Memory.TotalSize();
        if (json)
        {
            CommonOptions.WriteJson(w =>
            {
                w.WriteStartObject();
                w.WriteString("input", input ?? m.SourcePath);
                w.WriteString("format", m.Origin.Description);
                w.WriteString("core", summary.Path);
                w.WriteNumber("coreBytes", summary.FileSize);
                w.WriteNumber("loadSegments", summary.LoadSegments);
                w.WriteNumber("kernelVirtualSegments", summary.VirtualSegments);
                w.WriteNumber("cpus", summary.Cpus);
                w.WriteString("vmcoreinfo", vmcoreinfo?.How);
                w.WriteString("hardware", hardwarePath);
                w.WriteString("hardwareXml", xmlPath);
                w.WriteNumber("devices", m.Devices.Count);
                w.WriteNumber("ramBytes", ram);
                w.WriteNumber("parseSeconds", Math.Round(parseSeconds, 4));
                w.WriteNumber("seconds", Math.Round(seconds, 4));
                w.WriteEndObject();
            });
        }
        else
        {
            Console.WriteLine($"{summary.Path}: ELF64 core, {summary.LoadSegments} PT_LOAD ({Hex.Size(ram)} of guest RAM) + {summary.VirtualSegments} for kernel virtual addresses, {summary.Cpus} vCPUs, VMCOREINFO: {vmcoreinfo?.How ?? "not found"}");
            Console.WriteLine($"{hardwarePath}: {m.Devices.Count} device sections, {m.Vcpus.Count} vCPUs");
            if (xmlPath is not null)
            {
                Console.WriteLine($"{xmlPath}: the same as XML");
            }

            if (result.RemovedStale is not null)
            {
                Console.WriteLine($"{result.RemovedStale}: removed (left by an earlier run; this one wrote no XML)");
            }

            Console.WriteLine($"done in {seconds:F2} s ({ram / Math.Max(seconds, 1e-6) / 1e9:F2} GB/s of guest RAM)");
            foreach (string warning in m.Warnings)
            {
                Console.Error.WriteLine($"warning: {warning}");
            }
        }

        return 0;
    }

    /// <summary>An IProgress that calls back on the reporting thread (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class SyncProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}

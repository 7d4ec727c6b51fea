using System.CommandLine;
using System.Text.Json;
using Spectre.Console;
using VmState.Arch.X86;
using VmState.Machine;
using VmState.Snapshots;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate info SNAPSHOT</c>: machine type, RAM blocks, vCPUs with RIP/CR3, devices.</summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        Argument<string?> input = CommonOptions.OptionalSnapshotArgument();
        Option<string?> snapshot = CommonOptions.SnapshotName();
        Option<bool> json = CommonOptions.Json();
        Option<bool> raw = CommonOptions.Raw();
        Option<string?> mainRam = CommonOptions.MainRam();
        var command = new Command("info", "Show what a snapshot holds: machine type, RAM blocks, vCPUs, devices");
        command.Arguments.Add(input);
        var live = new LiveOptions(command);
        command.Options.Add(snapshot);
        command.Options.Add(json);
        command.Options.Add(raw);
        command.Options.Add(mainRam);
        var indexCache = new IndexCacheOptions(command);
        command.SetAction(r => CommonOptions.Run(() =>
        {
            using Vm vm = CommonOptions.OpenVm(r.GetValue(input), live.Get(r), CommonOptions.VmOptions(r.GetValue(snapshot), r.GetValue(raw), cacheReads: false, mainRam: r.GetValue(mainRam), indexCache: indexCache.Get(r)), pause: true);
            MachineState m = vm.Machine;
            if (r.GetValue(json))
            {
                WriteJson(m, Console.OpenStandardOutput());
            }
            else
            {
                WriteText(m);
            }

            return 0;
        }));
        return command;
    }

    public static void WriteJson(MachineState m, Stream output)
    {
        using var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true });
        w.WriteStartObject();
        w.WriteString("path", m.SourcePath);
        w.WriteString("format", m.Origin.Description);
        w.WriteString("machineType", m.MachineType);
        if (m.Origin.LibvirtDomainXml is string domainXml)
        {
            (string? name, string? uuid) = LibvirtDomainDescription.NameAndUuid(domainXml);
            w.WriteStartObject("libvirtDomain");
            w.WriteString("name", name);
            w.WriteString("uuid", uuid);
            w.WriteString("xml", domainXml);
            w.WriteEndObject();
        }

        w.WriteStartArray("ramBlocks");
        foreach (RamBlockInfo b in m.RamBlocks)
        {
            w.WriteStartObject();
            w.WriteString("name", b.Name);
            w.WriteNumber("length", b.Length);
            w.WriteStartArray("mappedAt");
            foreach (BlockMapping map in b.Mappings)
            {
                w.WriteStringValue(Hex.Of(map.GuestPhysicalAddress));
            }

            w.WriteEndArray();
            if (b.DataPages >= 0)
            {
                w.WriteNumber("dataPages", b.DataPages);
                w.WriteNumber("zeroPages", b.ZeroPages);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("physicalRanges");
        foreach (var r in m.Memory.Ranges)
        {
            w.WriteStartObject();
            w.WriteString("start", Hex.Of(r.Start));
            w.WriteString("end", Hex.Of(r.End));
            w.WriteString("name", r.Name);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("cpus");
        foreach (X86CpuState c in m.Cpus)
        {
            w.WriteStartObject();
            w.WriteNumber("index", c.Index);
            w.WriteString("mode", X86OperatingMode.Describe(c));
            w.WriteString("rip", Hex.Of(c.Rip));
            w.WriteString("rsp", Hex.Of(c.Regs[4]));
            w.WriteString("cr3", Hex.Of(c.Cr3));
            w.WriteString("cr0", Hex.Of(c.Cr0));
            w.WriteString("cr4", Hex.Of(c.Cr4));
            if (c.Halted is bool h)
            {
                w.WriteBoolean("halted", h);
            }

            w.WriteEndObject();
        }

        foreach (VmState.Arch.Arm64.Arm64CpuState c in m.Arm64Cpus)
        {
            w.WriteStartObject();
            w.WriteNumber("index", c.Index);
            w.WriteString("architecture", "aarch64");
            w.WriteString("mode", c.DescribeMode());
            w.WriteString("pc", Hex.Of(c.Pc));
            w.WriteString("sp", Hex.Of(c.Sp));
            w.WriteString("pstate", Hex.Of(c.Pstate));
            w.WriteStartObject("systemRegisters");
            foreach (ulong id in c.SystemRegisterIds)
            {
                w.WriteString(VmState.Arch.Arm64.Arm64SystemRegisters.NameOf(id), Hex.Of(c.SystemRegister(id) ?? 0));
            }

            w.WriteEndObject();
            if (c.Halted is bool h)
            {
                w.WriteBoolean("halted", h);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("devices");
        foreach (DeviceState d in m.Devices)
        {
            w.WriteStartObject();
            w.WriteString("id", d.IdStr);
            w.WriteNumber("instance", d.InstanceId);
            w.WriteString("vmsd", d.State?.VmsdName);
            w.WriteNumber("version", d.State?.Version ?? 0);
            w.WriteNumber("length", d.Length);
            foreach ((string k, string v) in d.Decoded)
            {
                w.WriteString(k, v);
            }

            w.WriteEndObject();
        }

        w.WriteEndArray();
        w.WriteStartArray("warnings");
        foreach (string s in m.Warnings)
        {
            w.WriteStringValue(s);
        }

        w.WriteEndArray();
        w.WriteEndObject();
        w.Flush();
        output.WriteByte((byte)'\n');
    }

    private static void WriteText(MachineState m)
    {
        IAnsiConsole console = AnsiConsole.Console;
        if (Console.IsOutputRedirected)
        {
            // Piped output has no terminal width; keep addresses on one line.
            console.Profile.Width = 160;
        }

        console.MarkupLine($"[bold]{TerminalText.Markup(m.SourcePath)}[/]: {TerminalText.Markup(m.Origin.Description)}, machine type [bold]{TerminalText.Markup(m.MachineType ?? "unknown")}[/]");
        if (m.Origin.LibvirtDomainXml is string domainXml)
        {
            (string? name, string? uuid) = LibvirtDomainDescription.NameAndUuid(domainXml);
            console.MarkupLine($"libvirt domain [bold]{TerminalText.Markup(name ?? "?")}[/] (uuid {TerminalText.Markup(uuid ?? "?")}), its XML kept ({domainXml.Length:N0} characters; info --json shows it)");
        }

        var blocks = new Table().Title("RAM blocks").AddColumns("name", "size", "mapped at", "data pages", "zero pages");
        foreach (RamBlockInfo b in m.RamBlocks)
        {
            string at = b.Mappings.Count == 0 ? "(not mapped)" : string.Join(", ", b.Mappings.Select(x => Hex.Of(x.GuestPhysicalAddress)));
            blocks.AddRow(TerminalText.Markup(b.Name), Hex.Size(b.Length), at, b.DataPages < 0 ? "-" : b.DataPages.ToString(System.Globalization.CultureInfo.InvariantCulture), b.ZeroPages < 0 ? "-" : b.ZeroPages.ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        console.Write(blocks);
        if (m.Architecture == VmState.Arch.CpuArchitecture.Arm64)
        {
            var armCpus = new Table().Title($"vCPUs ({m.Arm64Cpus.Count}, AArch64)").AddColumns("cpu", "mode", "PC", "SP", "TTBR0_EL1", "TTBR1_EL1", "halted");
            foreach (VmState.Arch.Arm64.Arm64CpuState c in m.Arm64Cpus)
            {
                armCpus.AddRow(c.Index.ToString(System.Globalization.CultureInfo.InvariantCulture), c.DescribeMode(), Hex.Of(c.Pc), Hex.Of(c.Sp), Hex.Of(c.Ttbr0El1), Hex.Of(c.Ttbr1El1), c.Halted switch { true => "yes", false => "no", null => "-" });
            }

            console.Write(armCpus);
        }

        var cpus = new Table().Title($"vCPUs ({m.Cpus.Count})").AddColumns("cpu", "mode", "RIP", "RSP", "CR3", "halted");
        foreach (X86CpuState c in m.Cpus)
        {
            cpus.AddRow(c.Index.ToString(System.Globalization.CultureInfo.InvariantCulture), X86OperatingMode.Describe(c), Hex.Of(c.Rip), Hex.Of(c.Regs[4]), Hex.Of(c.Cr3), c.Halted switch { true => "yes", false => "no", null => "-" });
        }

        if (m.Architecture == VmState.Arch.CpuArchitecture.X86_64)
        {
            console.Write(cpus);
        }

        if (m.Devices.Count > 0)
        {
            var devices = new Table().Title($"Devices ({m.Devices.Count})").AddColumns("section", "instance", "vmsd", "bytes", "decoded");
            foreach (DeviceState d in m.Devices)
            {
                string decoded = string.Join(", ", d.Decoded.Select(kv => $"{kv.Key}={kv.Value}"));
                devices.AddRow(TerminalText.Markup(d.IdStr), d.InstanceId.ToString(System.Globalization.CultureInfo.InvariantCulture), TerminalText.Markup($"{d.State?.VmsdName} v{d.State?.Version}"), d.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), TerminalText.Markup(decoded));
            }

            console.Write(devices);
        }

        foreach (string w in m.Warnings)
        {
            console.MarkupLine($"[yellow]warning:[/] {TerminalText.Markup(w)}");
        }
    }
}

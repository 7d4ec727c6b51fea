using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using VmState.Arch.X86;
using VmState.Linux;
using VmState.Machine;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate kernel-info SNAPSHOT</c>: where the Linux kernel is, how that was established, and its basic state.</summary>
internal static class KernelInfoCommand
{
    public static Command Create()
    {
        Option<bool> json = CommonOptions.Json();
        var command = new Command("kernel-info", "Find the Linux kernel in a snapshot with no profile and show what was found and how");
        var input = new KernelInput(command);
        command.Options.Add(json);
        command.SetAction(r => KernelInput.Run(() =>
        {
            using Vm vm = input.Open(r);
            LinuxKernel k = vm.Linux.Kernel;
            KernelSummary s = KernelSummary.Read(k);
            if (r.GetValue(json))
            {
                WriteJson(k, s, Console.OpenStandardOutput());
            }
            else
            {
                Console.Write(KernelInfoText.Format(k, s));
            }

            return 0;
        }));
        return command;
    }

    /// <summary>The kernel-info --json document (also the web server's <c>/api/.../kernel-info</c>).</summary>
    internal static void WriteJson(LinuxKernel k, KernelSummary s, Stream output)
    {
        using var w = new Utf8JsonWriter(output, new JsonWriterOptions { Indented = true });
        void Maybe(string name, ulong? v)
        {
            if (v is ulong x)
            {
                w.WriteString(name, Hex.Of(x));
            }
            else
            {
                w.WriteNull(name);
            }
        }

        w.WriteStartObject();
        w.WriteString("release", k.Release);
        w.WriteString("banner", k.Banner);
        w.WriteString("method", k.Method.ToString());
        w.WriteString("vmcoreinfoSource", k.VmcoreinfoSource);
        w.WriteNumber("pagingLevels", k.Arm64Layout is Linux.Arm64KernelLayout a ? (a.VaBits - 12 + 8) / 9 : k.Paging == PagingMode.Level5 ? 5 : 4);
        w.WriteString("pageTableRoot", Hex.Of(k.PageTableRoot));
        w.WriteString("text", Hex.Of(k.TextAddress));
        w.WriteString("textPhysical", Hex.Of(k.TextPhysicalAddress));
        w.WriteString("imageEnd", Hex.Of(k.ImageEnd));
        w.WriteNumber("kaslrOffset", k.KaslrOffset);
        w.WriteNumber("physBase", k.PhysBase);
        Maybe("pageOffsetBase", s.PageOffsetBase);
        Maybe("vmallocBase", s.VmallocBase);
        Maybe("vmemmapBase", s.VmemmapBase);
        w.WriteString("hostname", s.Hostname);
        w.WriteString("version", s.Version);
        w.WriteString("machine", s.Machine);
        w.WriteString("commandLine", s.CommandLine);
        w.WriteStartArray("cpus");
        foreach ((int cpu, ulong? offset, int? pid, string? comm) in s.Cpus)
        {
            w.WriteStartObject();
            w.WriteNumber("cpu", cpu);
            Maybe("perCpuOffset", offset);
            if (pid is int p)
            {
                w.WriteNumber("currentPid", p);
            }
            else
            {
                w.WriteNull("currentPid");
            }

            w.WriteString("currentComm", comm);
            w.WriteEndObject();
        }

        w.WriteEndArray();
        KallsymsLayout l = k.Symbols.Layout;
        w.WriteStartObject("kallsyms");
        w.WriteNumber("count", k.Symbols.Count);
        w.WriteString("source", l.Source);
        w.WriteString("encoding", l.Encoding.ToString());
        w.WriteString("order", l.Order);
        w.WriteBoolean("bigLengths", l.BigLengths);
        w.WriteString("numSyms", Hex.Of(l.NumSyms));
        w.WriteString("names", Hex.Of(l.Names));
        w.WriteString("markers", Hex.Of(l.Markers));
        Maybe("seqsOfNames", l.SeqsOfNames);
        w.WriteString("tokenTable", Hex.Of(l.TokenTable));
        w.WriteString("tokenIndex", Hex.Of(l.TokenIndex));
        w.WriteString("addressTable", Hex.Of(l.AddressTable));
        Maybe("relativeBase", l.RelativeBase);
        w.WriteEndObject();
        w.WriteStartObject("btf");
        if (s.BtfTypes is int n)
        {
            w.WriteNumber("types", n);
            w.WriteNumber("bytes", s.BtfBytes ?? 0);
        }
        else
        {
            w.WriteString("problem", s.BtfProblem);
        }

        w.WriteEndObject();
        w.WriteStartArray("evidence");
        foreach (string e in k.Evidence)
        {
            w.WriteStringValue(e);
        }

        w.WriteEndArray();
        w.WriteEndObject();
        w.Flush();
        output.WriteByte((byte)'\n');
    }
}

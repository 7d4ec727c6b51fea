using System.Diagnostics;
using System.Text;
using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.Integration.Harness;
using VmState.IO;

namespace VmState.Integration;

/// <summary>
/// Peers read what <see cref="ElfCoreBuilder"/> writes with PN_XNUM numbering: binutils' readelf and gdb (BFD) take
/// the program header count from section header 0 and find the last of 70,001 segments. No guest is needed.
/// </summary>
public sealed class ElfCorePeerTests : IDisposable
{
    private const int Count = 70_000;
    private readonly string _dir = Directory.CreateTempSubdirectory("vmstate-elfpeer-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static ulong Address(int i) => 0x10000000UL + ((ulong)i * 0x2000);

    private string WriteCore()
    {
        // A process-style core: one thread's NT_PRSTATUS, then 70,000 PT_LOADs of 16 file bytes (of a 4 KiB page)
        // naming their own index, so a read that picked the wrong segment shows.
        var core = new ElfCoreBuilder { NoteAlignment = 4 };
        var cpu = new X86CpuState { Index = 0, Rip = Address(Count - 1) };
        core.AddNote(X86CoreNotes.Prstatus(cpu));
        for (int i = 0; i < Count; i++)
        {
            byte[] text = Encoding.ASCII.GetBytes($"SEGMENT-{i:D6}\0");
            core.AddLoad(Address(i), 0, 6, 16, 16, 0x1000, (output, _) => output.Write(0, text));
        }

        string path = Path.Combine(_dir, "many.core");
        using OutputFile output = OutputFile.Create(path, OutputRules.ForInputs([]));
        core.Layout().WriteTo(output);
        output.Commit();
        return path;
    }

    [Fact]
    public void ReadelfAndGdbTakeTheCountFromSectionHeaderZero()
    {
        string core = WriteCore();

        string header = Readelf("-hW", core);
        Assert.Contains("CORE (Core file)", header, StringComparison.Ordinal);
        Assert.Matches(@"Number of program headers:\s+65535 \(70001\)", header);
        string segments = Readelf("-lW", core);
        Assert.Contains("There are 70001 program headers, starting at offset 128", segments, StringComparison.Ordinal);
        Assert.Matches($@"LOAD\s+0x[0-9a-f]+ 0x0*{Address(Count - 1):x} 0x0+ 0x0+10 0x0+1000 RW\s+0x10", segments);

        (int code, string output) = GdbBatch.Run(core, $"x/s 0x{Address(Count - 1):x}", $"x/s 0x{Address(65_534):x}", "info registers rip");
        Assert.True(code == 0, output);
        Assert.Contains($"\"SEGMENT-{Count - 1:D6}\"", output, StringComparison.Ordinal);
        Assert.Contains("\"SEGMENT-065534\"", output, StringComparison.Ordinal);
        Assert.Matches($@"rip\s+0x{Address(Count - 1):x}", output);
    }

    private static string Readelf(string option, string path)
    {
        var psi = new ProcessStartInfo("readelf") { RedirectStandardOutput = true, RedirectStandardError = true };
        psi.ArgumentList.Add(option);
        psi.ArgumentList.Add(path);
        using Process p = Process.Start(psi) ?? throw new InvalidOperationException("readelf is not installed (binutils; run eng/install-deps.sh)");
        Task<string> stderr = p.StandardError.ReadToEndAsync();
        string stdout = p.StandardOutput.ReadToEnd();
        p.WaitForExit();
        Assert.True(p.ExitCode == 0 && stderr.Result.Length == 0, $"readelf {option}: exit {p.ExitCode}\n{stderr.Result}");
        return stdout;
    }
}

using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.IO;
using VmState.Machine;

namespace VmState.Export;

/// <summary>
/// Writes a machine's software and hardware state into a directory as a set: <c>core.elf</c>,
/// <c>hardware.json</c> and, when asked, <c>hardware.xml</c>. Every file is written under a temporary name first and
/// the set is renamed into place only when all of it is complete, so a failure (a full disk, a bad page, Ctrl-C)
/// leaves the directory as it was; a <c>hardware.xml</c> of an earlier run is removed when this run writes none, so
/// the directory never mixes two runs. No output may be an input (by file identity), and outputs are no wider in
/// permission than the input.
/// </summary>
public static class MachineExport
{
    /// <summary>The name of the core in the output directory.</summary>
    public const string CoreName = "core.elf";

    /// <summary>The name of the hardware state (JSON) in the output directory.</summary>
    public const string HardwareJsonName = "hardware.json";

    /// <summary>The name of the hardware state (XML) in the output directory.</summary>
    public const string HardwareXmlName = "hardware.xml";

    /// <summary>What to write.</summary>
    /// <param name="Xml">Also write hardware.xml.</param>
    /// <param name="VmcoreinfoNote">The guest's VMCOREINFO note to carry in the core, if found.</param>
    /// <param name="KernelMappings">Kernel virtual mappings to add as extra PT_LOADs.</param>
    public sealed record Options(bool Xml, byte[]? VmcoreinfoNote, IReadOnlyList<VirtualMapping> KernelMappings);

    /// <summary>What was written.</summary>
    /// <param name="Core">The core's summary.</param>
    /// <param name="HardwareJson">The path of hardware.json.</param>
    /// <param name="HardwareXml">The path of hardware.xml, when written.</param>
    /// <param name="RemovedStale">A hardware.xml of an earlier run that was removed, if any.</param>
    public sealed record Result(ElfCoreSummary Core, string HardwareJson, string? HardwareXml, string? RemovedStale);

    /// <summary>Writes the set into <paramref name="directory"/> (created when missing, removed again on failure if this call created it).</summary>
    public static Result Write(MachineState machine, string directory, Options options, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default)
    {
        string full = Path.GetFullPath(directory);
        bool created = !Directory.Exists(full);
        Directory.CreateDirectory(full);
        try
        {
            return WriteSet(machine, full, options, progress, cancellationToken);
        }
        catch
        {
            if (created)
            {
                TryRemoveEmpty(full);
            }

            throw;
        }
    }

    private static Result WriteSet(MachineState machine, string directory, Options options, IProgress<(long Done, long Total)>? progress, CancellationToken cancellationToken)
    {
        OutputRules rules = OutputRules.ForInputs([machine.SourcePath]);
        string xmlPath = Path.Combine(directory, HardwareXmlName);
        // Every target is checked (and its temporary created) before anything is written.
        using OutputFile core = OutputFile.Create(Path.Combine(directory, CoreName), rules);
        using OutputFile json = OutputFile.Create(Path.Combine(directory, HardwareJsonName), rules);
        using OutputFile? xml = options.Xml ? OutputFile.Create(xmlPath, rules) : null;
        if (!options.Xml && File.Exists(xmlPath))
        {
            rules.CheckTarget(xmlPath);
        }

        using (Stream s = json.OpenStream())
        {
            HardwareJsonWriter.Write(machine, s);
        }

        if (xml is not null)
        {
            using Stream s = xml.OpenStream();
            HardwareXmlWriter.Write(machine, s);
        }

        ElfCoreSummary summary = ElfCoreWriter.WriteTo(machine, core, options.VmcoreinfoNote, options.KernelMappings, progress, cancellationToken);
        cancellationToken.ThrowIfCancellationRequested();

        // Everything is complete: remove what belongs to an earlier run, then rename the set into place.
        string? removed = null;
        if (xml is null && File.Exists(xmlPath))
        {
            File.Delete(xmlPath);
            removed = xmlPath;
        }

        json.Commit();
        xml?.Commit();
        core.Commit();
        return new Result(summary, json.Path, xml?.Path, removed);
    }

    private static void TryRemoveEmpty(string directory)
    {
        try
        {
            if (!Directory.EnumerateFileSystemEntries(directory).Any())
            {
                Directory.Delete(directory);
            }
        }
        catch (IOException)
        {
        }
        catch (UnauthorizedAccessException)
        {
        }
    }
}

using VmState.Arch.X86;
using VmState.Formats.Elf;
using VmState.IO;
using VmState.Machine;
using VmState.Memory;

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
        ArgumentNullException.ThrowIfNull(machine);
        using Session session = Begin(directory, machine.SourcePath, options.Xml);
        return session.Finish(machine, options, progress, cancellationToken);
    }

    /// <summary>
    /// Starts writing the set for the input at <paramref name="inputPath"/> before it is opened: the directory is
    /// created, every target checked and its temporary created. Open the input with
    /// <see cref="Session.RamObserver"/> (<c>VmOpenOptions.RamObserver</c>) and a migration stream's RAM is written
    /// into the core while the stream is parsed, then call <see cref="Session.Finish"/>. Disposing an unfinished
    /// session removes the temporaries (and the directory, if this call created it and it is empty).
    /// </summary>
    /// <param name="directory">The output directory.</param>
    /// <param name="inputPath">The input file, which no output may be (by file identity); null for a running VM.</param>
    /// <param name="xml">Also write hardware.xml.</param>
    public static Session Begin(string directory, string? inputPath, bool xml)
    {
        string full = Path.GetFullPath(directory);
        bool created = !Directory.Exists(full);
        Directory.CreateDirectory(full);
        try
        {
            return new Session(full, created, inputPath, xml);
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

    /// <summary>One extract in progress: the temporaries of the set, and the writer of a streamed core's RAM.</summary>
    public sealed class Session : IDisposable
    {
        private readonly string _directory;
        private readonly bool _created;
        private readonly bool _xml;
        private readonly OutputFile _core;
        private readonly OutputFile _json;
        private readonly OutputFile? _xmlFile;
        private readonly StreamedRamWriter _ram;
        private bool _finished;
        private bool _committed;

        internal Session(string directory, bool created, string? inputPath, bool xml)
        {
            _directory = directory;
            _created = created;
            _xml = xml;
            OutputRules rules = OutputRules.ForInputs([inputPath]);
            var opened = new List<IDisposable>();
            try
            {
                // Every target is checked (and its temporary created) before anything is written.
                _core = Add(opened, OutputFile.Create(Path.Combine(directory, CoreName), rules));
                _json = Add(opened, OutputFile.Create(Path.Combine(directory, HardwareJsonName), rules));
                _xmlFile = xml ? Add(opened, OutputFile.Create(Path.Combine(directory, HardwareXmlName), rules)) : null;
                if (!xml && File.Exists(XmlPath))
                {
                    rules.CheckTarget(XmlPath);
                }

                _ram = new StreamedRamWriter(_core.Handle);
            }
            catch
            {
                opened.ForEach(o => o.Dispose());
                throw;
            }
        }

        /// <summary>
        /// Give this to the snapshot reader (<c>VmOpenOptions.RamObserver</c>): a migration stream's RAM then goes into
        /// the core while it is parsed, and <see cref="Finish"/> only adds the headers.
        /// </summary>
        public IRamStreamObserver RamObserver => _ram;

        private string XmlPath => Path.Combine(_directory, HardwareXmlName);

        /// <summary>
        /// Waits for the RAM written during the parse, then gives the guest-physical pages of
        /// <paramref name="machine"/> where a VMCOREINFO note may start (for <see cref="VmcoreinfoLocator.Find"/>),
        /// or null when no RAM was streamed and a scan must read all of it.
        /// </summary>
        public IReadOnlyList<ulong>? VmcoreinfoCandidates(MachineState machine)
        {
            _ram.Complete();
            return _ram.VmcoreinfoCandidates(machine);
        }

        /// <summary>Writes the rest of the set for <paramref name="machine"/> and renames it into place.</summary>
        public Result Finish(MachineState machine, Options options, IProgress<(long Done, long Total)>? progress = null, CancellationToken cancellationToken = default)
        {
            ArgumentNullException.ThrowIfNull(machine);
            ArgumentNullException.ThrowIfNull(options);
            if (options.Xml != _xml)
            {
                throw new ArgumentException($"the session was begun {(_xml ? "with" : "without")} hardware.xml", nameof(options));
            }

            if (_finished)
            {
                throw new InvalidOperationException("the export is finished already");
            }

            _finished = true;
            _ram.Complete();
            using (Stream s = _json.OpenStream())
            {
                HardwareJsonWriter.Write(machine, s);
            }

            if (_xmlFile is not null)
            {
                using Stream s = _xmlFile.OpenStream();
                HardwareXmlWriter.Write(machine, s);
            }

            ElfCoreSummary summary = ElfCoreWriter.WriteTo(machine, _core, options.VmcoreinfoNote, options.KernelMappings, r => _ram.OffsetOf(machine, r), progress, cancellationToken);
            cancellationToken.ThrowIfCancellationRequested();

            // Everything is complete: remove what belongs to an earlier run, then rename the set into place.
            string? removed = null;
            if (_xmlFile is null && File.Exists(XmlPath))
            {
                File.Delete(XmlPath);
                removed = XmlPath;
            }

            _json.Commit();
            _xmlFile?.Commit();
            _core.Commit();
            _committed = true;
            return new Result(summary, _json.Path, _xmlFile?.Path, removed);
        }

        /// <inheritdoc />
        public void Dispose()
        {
            _ram.Dispose();
            _core.Dispose();
            _json.Dispose();
            _xmlFile?.Dispose();
            if (_created && !_committed)
            {
                TryRemoveEmpty(_directory);
            }
        }

        private static T Add<T>(List<IDisposable> opened, T item)
            where T : IDisposable
        {
            opened.Add(item);
            return item;
        }
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

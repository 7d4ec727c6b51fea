using VmState.Editing;
using VmState.Export;
using VmState.Formats.Migration;
using VmState.Machine;
using VmState.Memory;

namespace VmState.Gdb;

/// <summary>
/// What a GDB session reads and changes: the vCPUs as threads (one selected), their registers in gdb's numbering
/// (through the machine's <see cref="IGdbTargetArchitecture"/>), memory by guest-physical address or through the
/// selected vCPU's page tables, and — for inputs that can be written (migration streams, qcow2 snapshots) — edits kept
/// in a <see cref="SnapshotEditor"/> overlay that memory reads see and <see cref="Save"/> writes out as a new snapshot.
/// </summary>
internal sealed class GdbTarget
{
    private readonly MachineState _machine;
    private readonly SnapshotEditor? _editor;
    private readonly IPhysicalMemory _memory;
    private readonly TextWriter _log;
    private readonly SaveDirectory? _saveDirectory;
    private readonly IGdbTargetArchitecture _arch;

    /// <exception cref="ArgumentException">The machine has no vCPU state.</exception>
    public GdbTarget(MachineState machine, TextWriter log, SaveDirectory? saveDirectory)
    {
        if (machine.Vcpus.Count == 0)
        {
            throw new ArgumentException($"{machine.SourcePath} has no vCPU state to debug");
        }

        _machine = machine;
        _log = log;
        _saveDirectory = saveDirectory;
        if (machine.Origin is MigrationStreamOrigin)
        {
            _editor = new SnapshotEditor(machine);
            _memory = _editor.Memory;
        }
        else
        {
            _memory = machine.Memory;
        }

        _arch = GdbTargetArchitectures.For(machine, _memory);
    }

    /// <summary>Memory addresses are guest-physical (true) or virtual through the selected vCPU's page tables.</summary>
    public bool PhysicalMode { get; set; }

    /// <summary>The selected thread: a vCPU index, 0-based (gdb's thread ids are one more).</summary>
    public int Thread { get; set; }

    /// <summary>Number of vCPUs (threads).</summary>
    public int CpuCount => _arch.CpuCount;

    /// <summary>The registers in gdb's numbering.</summary>
    public IReadOnlyList<GdbRegister> Registers => _arch.Registers;

    /// <summary>The target.xml document.</summary>
    public string TargetXml => _arch.TargetXml;

    /// <summary>Edits made so far (memory and registers).</summary>
    public IReadOnlyList<string> Edits => _editor?.Log ?? [];

    /// <summary>Size in bytes of the register block of the 'g' and 'G' packets.</summary>
    public int RegisterBlockSize => _arch.Registers.Sum(r => r.Bits / 8);

    private int Cpu => Math.Clamp(Thread, 0, _arch.CpuCount - 1);

    /// <summary>What gdb shows for thread <paramref name="cpu"/> (a vCPU index).</summary>
    public string DescribeThread(int cpu) => _arch.DescribeThread(cpu);

    /// <summary>Register <paramref name="n"/> (gdb's numbering) of the selected vCPU, in target byte order.</summary>
    public byte[] ReadRegister(int n) => _arch.ReadRegister(Cpu, n);

    /// <summary>
    /// The 'G' packet's block (every register in order, <see cref="RegisterBlockSize"/> bytes): only the registers that
    /// change are written, and all of them must be writable before the first is.
    /// </summary>
    /// <exception cref="InvalidOperationException">The input is read-only.</exception>
    /// <exception cref="ArgumentException">A register that changes cannot be written.</exception>
    public void WriteRegisters(byte[] all)
    {
        var changes = new List<(int Index, byte[] Value)>();
        int at = 0;
        for (int i = 0; i < _arch.Registers.Count; i++)
        {
            int size = _arch.Registers[i].Bits / 8;
            byte[] value = all.AsSpan(at, size).ToArray();
            if (!ReadRegister(i).AsSpan().SequenceEqual(value))
            {
                changes.Add((i, value));
            }

            at += size;
        }

        foreach ((int index, _) in changes)
        {
            CheckWritable(index);
        }

        foreach ((int index, byte[] value) in changes)
        {
            _arch.WriteRegister(_editor!, Cpu, index, value);
        }
    }

    /// <summary>Writes register <paramref name="n"/> of the selected vCPU (<paramref name="value"/> in target byte order, the register's size).</summary>
    /// <exception cref="InvalidOperationException">The input is read-only.</exception>
    /// <exception cref="ArgumentException">The register cannot be written.</exception>
    public void WriteRegister(int n, byte[] value)
    {
        CheckWritable(n);
        _arch.WriteRegister(_editor!, Cpu, n, value);
    }

    /// <summary>Reads memory at <paramref name="address"/> (physical or virtual, see <see cref="PhysicalMode"/>); the bytes read, 0 when none are mapped.</summary>
    public int ReadMemory(ulong address, Span<byte> buffer) => PhysicalMode ? _memory.Read(address, buffer) : _arch.ReadVirtual(Cpu, address, buffer);

    /// <summary>Writes memory at <paramref name="address"/> (physical or virtual, see <see cref="PhysicalMode"/>) into the overlay.</summary>
    /// <exception cref="InvalidOperationException">The input is read-only.</exception>
    /// <exception cref="InvalidEditException">The range is not RAM or not mapped.</exception>
    public void WriteMemory(ulong address, byte[] data)
    {
        if (_editor is null)
        {
            throw new InvalidOperationException($"{_machine.Origin.Description} inputs are read-only");
        }

        if (PhysicalMode)
        {
            _editor.WritePhysical(address, data);
        }
        else
        {
            _arch.WriteVirtual(_editor, Cpu, address, data);
        }

        // Page tables may have changed.
        _arch.Invalidate();
    }

    /// <summary><c>monitor save NAME</c>: the snapshot with the edits, written as NAME in the save directory; the text for gdb and whether it worked.</summary>
    public (string Output, bool Ok) Save(string? name, CancellationToken ct)
    {
        if (_editor is null)
        {
            return ($"cannot save: {_machine.SourcePath} is a {_machine.Origin.Description}; only migration streams and qcow2 snapshots can be written", false);
        }

        if (_saveDirectory is not SaveDirectory directory)
        {
            return ("saving is disabled: start vmstate gdbserver with --save-dir DIR to allow 'monitor save NAME' to write NAME in DIR", false);
        }

        if (name is null)
        {
            return ($"usage: monitor save NAME (a file name; it is written in {directory.Path})", false);
        }

        try
        {
            long bytes = 0;
            string path = directory.Write(name, output => bytes = _editor.Stream.WriteTo(output, ct));
            _log.WriteLine($"gdbserver: saved {path}");
            return ($"saved {path} as a migration stream ({bytes} bytes, {_editor.Stream.EditedPages} pages and {_editor.Stream.EditedFields} fields changed)", true);
        }
        catch (Exception e) when (e is ArgumentException or IOException or UnauthorizedAccessException)
        {
            // The overlay is untouched by a failed save: the user can fix the cause and save again.
            _log.WriteLine($"gdbserver: save {GdbText.Printable(name)} failed: {e.Message}");
            return ($"{e.Message}\nnothing was saved; the {Edits.Count} edits are kept", false);
        }
    }

    private void CheckWritable(int n)
    {
        if (_editor is null)
        {
            throw new InvalidOperationException($"{_machine.Origin.Description} inputs are read-only");
        }

        if (_arch.WriteRefusal(n) is string refusal)
        {
            throw new ArgumentException(refusal);
        }
    }
}

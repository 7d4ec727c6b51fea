using System.Buffers.Binary;
using VmState.Arch.X86;
using VmState.Editing;
using VmState.Memory;

namespace VmState.Gdb;

/// <summary>
/// x86-64 for the GDB server: the register table's gdb view (<see cref="X86Registers.Gdb"/>,
/// <see cref="X86TargetDescription"/>), memory through the vCPU's paging mode and CR3.
/// </summary>
internal sealed class X86GdbArchitecture(IReadOnlyList<X86CpuState> cpus, IPhysicalMemory memory) : IGdbTargetArchitecture
{
    private readonly Dictionary<int, AddressSpace> _spaces = new();

    /// <inheritdoc />
    public IReadOnlyList<GdbRegister> Registers => X86TargetDescription.Registers;

    /// <inheritdoc />
    public string TargetXml => X86TargetDescription.Xml;

    /// <inheritdoc />
    public int CpuCount => cpus.Count;

    /// <inheritdoc />
    public int CpuIndex(int cpu) => cpus[cpu].Index;

    /// <inheritdoc />
    public string DescribeThread(int cpu) => $"vCPU {cpus[cpu].Index}, CR3 0x{cpus[cpu].Cr3:x}";

    /// <inheritdoc />
    public byte[] ReadRegister(int cpu, int n)
    {
        X86Register reg = X86Registers.Gdb[n];
        byte[] value = new byte[reg.Gdb!.Bits / 8];
        reg.Read(cpus[cpu], value);
        return value;
    }

    /// <inheritdoc />
    public string? WriteRefusal(int n) => X86Registers.Gdb[n].Editable ? null : $"writing {X86Registers.Gdb[n].Gdb!.Name} is not supported";

    /// <inheritdoc />
    public void WriteRegister(SnapshotEditor editor, int cpu, int n, ReadOnlySpan<byte> value)
    {
        // The table's name, not gdb's: the editor knows eflags as rflags and k_gs_base as kernel_gs_base.
        X86Register reg = X86Registers.Gdb[n];
        Span<byte> tmp = stackalloc byte[8];
        tmp.Clear();
        value[..Math.Min(8, value.Length)].CopyTo(tmp);
        ulong v = BinaryPrimitives.ReadUInt64LittleEndian(tmp);
        X86CpuState c = cpus[cpu];
        editor.SetRegister(c.Index, reg.Name, v);
        reg.Set(c, v);
        _spaces.Remove(cpu);
    }

    /// <inheritdoc />
    public int ReadVirtual(int cpu, ulong address, Span<byte> destination) => Space(cpu).Read(address, destination);

    /// <inheritdoc />
    public void WriteVirtual(SnapshotEditor editor, int cpu, ulong address, byte[] data) => editor.WriteVirtual(address, data, cpus[cpu].Index);

    /// <inheritdoc />
    public void Invalidate()
    {
        foreach (AddressSpace s in _spaces.Values)
        {
            s.Invalidate();
        }
    }

    private AddressSpace Space(int cpu)
    {
        if (!_spaces.TryGetValue(cpu, out AddressSpace? space))
        {
            space = AddressSpace.Of(memory, cpus[cpu]);
            _spaces[cpu] = space;
        }

        return space;
    }
}

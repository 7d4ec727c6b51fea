using VmState.Live;
using VmState.Memory;

namespace VmState;

/// <summary>
/// A running guest's RAM as <see cref="IWritableMemory"/>: given only when <see cref="LiveMemory"/> reaches all of it
/// through shared mappings or QEMU's process memory (the QMP and gdbstub fallbacks are read-only).
/// </summary>
internal sealed class VmWritableMemory(LiveMemory memory) : IWritableMemory
{
    public string Name => memory.Name;

    public IReadOnlyList<MemoryRange> Ranges => memory.Ranges;

    public int Read(ulong address, Span<byte> destination) => memory.Read(address, destination);

    public int Write(ulong address, ReadOnlySpan<byte> source) => memory.Write(address, source);
}

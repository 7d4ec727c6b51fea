namespace VmState.Gdb;

/// <summary>A register as the GDB target description numbers it.</summary>
/// <param name="Name">gdb's name for it.</param>
/// <param name="Bits">Size in bits.</param>
/// <param name="Type">Target-description type.</param>
/// <param name="Feature">The target-description feature it belongs to.</param>
internal sealed record GdbRegister(string Name, int Bits, string Type, string Feature);

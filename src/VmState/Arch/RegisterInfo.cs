namespace VmState.Arch;

/// <summary>One register of an architecture's register file, as a debugger numbers it.</summary>
/// <param name="Name">The name gdb uses (e.g. "x0", "sp", "pc", "cpsr", "v0").</param>
/// <param name="Size">Size in bytes.</param>
/// <param name="GdbNumber">gdb's register number in the architecture's core target description.</param>
/// <param name="Group">"general", "vector" or "float" (gdb's register groups).</param>
public sealed record RegisterInfo(string Name, int Size, int GdbNumber, string Group);

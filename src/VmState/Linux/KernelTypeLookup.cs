using VmState.Linux.Btf;

namespace VmState.Linux;

/// <summary>A kernel type found by <see cref="KernelTypeLookup"/>: the BTF it is in and its id there.</summary>
/// <param name="Types">The BTF holding the type: the kernel's, or a loaded module's (split BTF on top of the kernel's).</param>
/// <param name="Id">The type's id in <paramref name="Types"/>.</param>
/// <param name="Module">The module whose BTF holds it, or null for the kernel's own (vmlinux) BTF.</param>
/// <param name="FromFallback">True when the type was not in vmlinux and was found in a module's BTF without one being asked for.</param>
public sealed record KernelTypeMatch(BtfTypes Types, int Id, string? Module, bool FromFallback);

/// <summary>
/// Finds a kernel type by the name a user gives it (as <c>pahole</c> or <c>vmstate types</c> take it): a C spelling
/// (<c>struct list_head</c>, <c>u8 *</c>, <c>char [16]</c>), or a bare name tried as struct, union, typedef, enum and
/// base type in that order; in vmlinux's BTF, in one loaded module's, or in vmlinux's and then every loaded module's.
/// </summary>
public static class KernelTypeLookup
{
    private static readonly BtfKind[] s_bareKinds = [BtfKind.Struct, BtfKind.Union, BtfKind.Typedef, BtfKind.Enum, BtfKind.Int, BtfKind.Float];

    /// <summary>
    /// The type <paramref name="name"/>: in the BTF of <paramref name="module"/> when given, else in the kernel's
    /// BTF, else (when the kernel has module BTF) in the first loaded module whose BTF has it.
    /// </summary>
    /// <exception cref="VmStateNotFoundException">
    /// No such type (<see cref="VmStateObjectKind.Type"/>), or no loaded module of that name has BTF
    /// (<see cref="VmStateObjectKind.Module"/>).
    /// </exception>
    public static KernelTypeMatch Find(LinuxKernel kernel, string name, string? module = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(name);
        if (module is not null)
        {
            IReadOnlyList<ModuleBtf> all = ModuleBtfList.Read(kernel);
            BtfTypes types = all.FirstOrDefault(b => b.Name == module)?.Types
                ?? throw new VmStateNotFoundException(VmStateObjectKind.Module, module, $"no BTF for module '{module}'; modules with BTF: {string.Join(", ", all.Select(b => b.Name))}");
            return new KernelTypeMatch(types, Find(types, name), module, FromFallback: false);
        }

        BtfTypes vmlinux = kernel.Types;
        try
        {
            return new KernelTypeMatch(vmlinux, Find(vmlinux, name), null, FromFallback: false);
        }
        catch (Exception e) when (e is ArgumentException or VmStateNotFoundException && kernel.Symbols.TryGetAddress("btf_modules", out _))
        {
            // Not in vmlinux: the first loaded module whose BTF has it.
            foreach (ModuleBtf b in ModuleBtfList.Read(kernel))
            {
                if (TryFind(b.Types, name) is int id)
                {
                    return new KernelTypeMatch(b.Types, id, b.Name, FromFallback: true);
                }
            }

            throw new VmStateNotFoundException(VmStateObjectKind.Type, name, $"no struct, union, typedef, enum or base type named '{name}' in the BTF of the kernel or of any loaded module");
        }
    }

    /// <summary>The id of <paramref name="name"/> in <paramref name="types"/> (its base included).</summary>
    /// <exception cref="VmStateNotFoundException">No such type (<see cref="VmStateObjectKind.Type"/>).</exception>
    public static int Find(BtfTypes types, string name)
    {
        ArgumentNullException.ThrowIfNull(types);
        ArgumentNullException.ThrowIfNull(name);
        string n = name.Trim();
        if (n.Contains(' ', StringComparison.Ordinal) || n.EndsWith('*') || n.EndsWith(']'))
        {
            return types.FindType(n);
        }

        foreach (BtfKind kind in s_bareKinds)
        {
            int id = types.Find(n, kind);
            if (id != 0)
            {
                return id;
            }
        }

        throw new VmStateNotFoundException(VmStateObjectKind.Type, n, $"no struct, union, typedef, enum or base type named '{n}' in the kernel's BTF");
    }

    private static int? TryFind(BtfTypes types, string name)
    {
        try
        {
            return Find(types, name);
        }
        catch (Exception e) when (e is ArgumentException or VmStateNotFoundException)
        {
            return null;
        }
    }
}

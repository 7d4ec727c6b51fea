using System.CommandLine;
using System.Text.Json;
using VmState.Linux;
using VmState.Linux.Btf;
using VmState.Machine;

namespace VmState.Cli.Commands;

/// <summary><c>vmstate types SNAPSHOT NAME</c>: a kernel type's layout from the guest's own BTF, like pahole.</summary>
internal static class TypesCommand
{
    public static Command Create()
    {
        var name = new Argument<string>("NAME") { Description = "a type: task_struct, \"struct list_head\", \"union thread_union\", \"enum pid_type\", a typedef such as kuid_t" };
        Option<bool> json = CommonOptions.Json();
        var module = new Option<string?>("--module", "-m") { Description = "look the type up in this loaded module's BTF (split BTF on top of vmlinux's), e.g. e1000" };
        var command = new Command("types", "Show the layout of a Linux kernel type from the BTF in guest memory (pahole-like)");
        var input = new KernelInput(command);
        command.Arguments.Add(name);
        command.Options.Add(json);
        command.Options.Add(module);
        command.SetAction(r => KernelInput.Run(() =>
        {
            using Vm vm = input.Open(r);
            LinuxKernel kernel = vm.Linux.Kernel;
            BtfTypes types = kernel.Types;
            if (r.GetValue(module) is string mod)
            {
                IReadOnlyList<ModuleBtf> all = ModuleBtfList.Read(kernel);
                types = all.FirstOrDefault(b => b.Name == mod)?.Types
                    ?? throw new ArgumentException($"no BTF for module '{mod}'; modules with BTF: {string.Join(", ", all.Select(b => b.Name))}");
            }

            int id;
            try
            {
                id = Lookup(types, r.GetValue(name)!);
            }
            catch (Exception e) when ((e is ArgumentException or VmStateNotFoundException) && r.GetValue(module) is null && kernel.Symbols.TryGetAddress("btf_modules", out _))
            {
                // Not in vmlinux: the first loaded module whose BTF has it.
                (ModuleBtf? holder, int found) = ModuleBtfList.Read(kernel).Select(b => (b, TryLookup(b.Types, r.GetValue(name)!))).FirstOrDefault(x => x.Item2 != 0);
                if (holder is null)
                {
                    throw new VmStateNotFoundException(VmStateObjectKind.Type, r.GetValue(name)!, $"no struct, union, typedef, enum or base type named '{r.GetValue(name)}' in the BTF of the kernel or of any loaded module");
                }

                Console.Error.WriteLine($"vmstate: '{r.GetValue(name)}' is from module {holder.Name}'s BTF");
                types = holder.Types;
                id = found;
            }

            if (r.GetValue(json))
            {
                CommonOptions.WriteJson(w =>
                {
                    WriteType(w, types, id, 0);
                });
            }
            else
            {
                Console.Write(TypeLayoutWriter.Format(types, id));
            }

            return 0;
        }));
        return command;
    }

    private static int TryLookup(BtfTypes types, string name)
    {
        try
        {
            return Lookup(types, name);
        }
        catch (Exception e) when (e is ArgumentException or VmStateNotFoundException)
        {
            return 0;
        }
    }

    /// <summary>A bare name is tried as struct, union, typedef, enum and base type, in that order.</summary>
    private static int Lookup(BtfTypes types, string name)
    {
        string n = name.Trim();
        if (n.Contains(' ', StringComparison.Ordinal) || n.EndsWith('*') || n.EndsWith(']'))
        {
            return types.FindType(n);
        }

        foreach (BtfKind kind in new[] { BtfKind.Struct, BtfKind.Union, BtfKind.Typedef, BtfKind.Enum, BtfKind.Int, BtfKind.Float })
        {
            int id = types.Find(n, kind);
            if (id != 0)
            {
                return id;
            }
        }

        throw new VmStateNotFoundException(VmStateObjectKind.Type, n, $"no struct, union, typedef, enum or base type named '{n}' in the kernel's BTF");
    }

    private static void WriteType(Utf8JsonWriter w, BtfTypes types, int id, ulong baseBits)
    {
        BtfType t = types.Get(id);
        BtfType r = types.Resolve(id);
        w.WriteStartObject();
        w.WriteString("name", types.TypeName(id));
        w.WriteString("kind", t.Kind.ToString());
        w.WriteNumber("id", id);
        if (r.Kind is not (BtfKind.Void or BtfKind.Function or BtfKind.FunctionProto or BtfKind.Forward))
        {
            w.WriteNumber("size", types.SizeOf(id));
        }

        if (r.IsComposite)
        {
            w.WriteStartArray("members");
            foreach (BtfMember m in r.Members)
            {
                ulong bits = baseBits + m.BitOffset;
                w.WriteStartObject();
                w.WriteString("name", m.Name);
                w.WriteString("type", types.TypeName(m.TypeId));
                w.WriteNumber("offset", bits / 8);
                if (m.IsBitfield)
                {
                    w.WriteNumber("bitOffset", bits % 8);
                    w.WriteNumber("bitSize", m.BitfieldSize);
                }

                BtfType mr = types.Resolve(m.TypeId);
                if (mr.Kind is not (BtfKind.Function or BtfKind.FunctionProto or BtfKind.Forward or BtfKind.Void))
                {
                    w.WriteNumber("size", types.SizeOf(m.TypeId));
                }

                if (m.IsAnonymous && mr.IsComposite)
                {
                    w.WritePropertyName("anonymous");
                    WriteType(w, types, m.TypeId, bits);
                }

                w.WriteEndObject();
            }

            w.WriteEndArray();
        }
        else if (r.Kind is BtfKind.Enum or BtfKind.Enum64)
        {
            w.WriteStartObject("values");
            foreach (BtfEnumValue v in r.EnumValues)
            {
                w.WriteNumber(v.Name, v.Value);
            }

            w.WriteEndObject();
        }

        w.WriteEndObject();
    }
}

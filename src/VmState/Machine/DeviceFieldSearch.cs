namespace VmState.Machine;

/// <summary>Finds fields inside decoded device state by name or type, through structs, arrays and subsections.</summary>
public static class DeviceFieldSearch
{
    /// <summary>Every field (depth first, wire order) under <paramref name="state"/>, with its dotted path.</summary>
    public static IEnumerable<(string Path, DeviceField Field)> Walk(VmsdState state, string prefix = "")
    {
        foreach (DeviceField f in state.Fields)
        {
            foreach ((string, DeviceField) x in Walk(f, prefix.Length == 0 ? f.Name : $"{prefix}.{f.Name}"))
            {
                yield return x;
            }
        }

        foreach (VmsdState s in state.Subsections)
        {
            foreach ((string, DeviceField) x in Walk(s, prefix.Length == 0 ? s.VmsdName : $"{prefix}/{s.VmsdName}"))
            {
                yield return x;
            }
        }
    }

    private static IEnumerable<(string, DeviceField)> Walk(DeviceField f, string path)
    {
        yield return (path, f);
        if (f.Struct is not null)
        {
            foreach ((string, DeviceField) x in Walk(f.Struct, path))
            {
                yield return x;
            }
        }

        if (f.Elements is not null)
        {
            for (int i = 0; i < f.Elements.Count; i++)
            {
                foreach ((string, DeviceField) x in Walk(f.Elements[i], $"{path}[{i}]"))
                {
                    yield return x;
                }
            }
        }
    }

    /// <summary>The first field of QEMU type <paramref name="type"/> under the device, or null.</summary>
    public static DeviceField? FindByType(DeviceState device, string type)
    {
        if (device.State is null)
        {
            return null;
        }

        foreach ((string _, DeviceField f) in Walk(device.State))
        {
            if (f.Type == type)
            {
                return f;
            }
        }

        return null;
    }

    /// <summary>The first field named <paramref name="name"/> (last path component) under the device, or null.</summary>
    public static DeviceField? FindByName(VmsdState state, string name)
    {
        foreach ((string _, DeviceField f) in Walk(state))
        {
            if (f.Name == name)
            {
                return f;
            }
        }

        return null;
    }
}

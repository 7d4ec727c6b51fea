using System.Text;

namespace VmState.Live;

/// <summary>
/// A QEMU option value of the form <c>key=value,key=value</c> (QEMU 7.2 <c>util/qemu-option.c</c>): elements split at
/// ',' where ",," stands for a comma inside a value; the first element may be a bare value for the option's implied
/// key (<c>-netdev user,id=n0</c>: type=user); any later bare element is a flag (<c>snapshot</c> is snapshot=on).
/// Keys keep their order, so a list rendered back reads as it was written.
/// </summary>
public sealed class QemuOptionList
{
    private readonly List<KeyValuePair<string, string>> _items;

    private QemuOptionList(List<KeyValuePair<string, string>> items)
    {
        _items = items;
    }

    /// <summary>The elements in order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Items => _items;

    /// <summary>Parses <paramref name="value"/>; a first element without '=' is <paramref name="impliedKey"/>'s value when one is given.</summary>
    public static QemuOptionList Parse(string value, string? impliedKey = null)
    {
        ArgumentNullException.ThrowIfNull(value);
        var items = new List<KeyValuePair<string, string>>();
        var current = new StringBuilder();
        var parts = new List<string>();
        for (int i = 0; i < value.Length; i++)
        {
            if (value[i] == ',')
            {
                if (i + 1 < value.Length && value[i + 1] == ',')
                {
                    current.Append(',');
                    i++;
                    continue;
                }

                parts.Add(current.ToString());
                current.Clear();
                continue;
            }

            current.Append(value[i]);
        }

        parts.Add(current.ToString());
        for (int i = 0; i < parts.Count; i++)
        {
            string part = parts[i];
            if (part.Length == 0 && parts.Count == 1)
            {
                break;
            }

            int eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                items.Add(new(part[..eq], part[(eq + 1)..]));
            }
            else if (i == 0 && impliedKey is not null)
            {
                items.Add(new(impliedKey, part));
            }
            else
            {
                items.Add(new(part, "on"));
            }
        }

        return new QemuOptionList(items);
    }

    /// <summary>The last value of <paramref name="key"/> (QEMU lets the last one win), or null.</summary>
    public string? Get(string key)
    {
        for (int i = _items.Count - 1; i >= 0; i--)
        {
            if (_items[i].Key == key)
            {
                return _items[i].Value;
            }
        }

        return null;
    }

    /// <summary>A copy with <paramref name="key"/> set to <paramref name="value"/>: in place of its first occurrence (later ones dropped), else appended.</summary>
    public QemuOptionList With(string key, string value)
    {
        var items = new List<KeyValuePair<string, string>>();
        bool done = false;
        foreach (KeyValuePair<string, string> kv in _items)
        {
            if (kv.Key != key)
            {
                items.Add(kv);
            }
            else if (!done)
            {
                items.Add(new(key, value));
                done = true;
            }
        }

        if (!done)
        {
            items.Add(new(key, value));
        }

        return new QemuOptionList(items);
    }

    /// <summary>A copy without <paramref name="key"/>.</summary>
    public QemuOptionList Without(string key) => new([.. _items.Where(kv => kv.Key != key)]);

    /// <summary>
    /// The value as QEMU reads it, commas inside values doubled; the element of <paramref name="impliedKey"/> is written
    /// first and bare when given (<c>user,id=n0</c>).
    /// </summary>
    public string ToString(string? impliedKey)
    {
        var parts = new List<string>();
        if (impliedKey is not null && Get(impliedKey) is string implied)
        {
            parts.Add(Escape(implied));
        }

        foreach (KeyValuePair<string, string> kv in _items)
        {
            if (impliedKey is null || kv.Key != impliedKey)
            {
                parts.Add($"{Escape(kv.Key)}={Escape(kv.Value)}");
            }
        }

        return string.Join(',', parts);
    }

    /// <inheritdoc/>
    public override string ToString() => ToString(null);

    private static string Escape(string s) => s.Replace(",", ",,", StringComparison.Ordinal);
}

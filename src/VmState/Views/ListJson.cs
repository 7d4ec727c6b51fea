using System.Globalization;
using System.Text.Json;

namespace VmState.Views;

/// <summary>
/// A <see cref="ListView{T}"/>'s rows as JSON: an array of objects, one property per field in the view's order
/// (hex fields as <c>"0x…"</c> strings, fields that are null and marked <see cref="ListField{T}.OmitWhenNull"/>
/// left out). The one JSON form of the list views, for <c>vmstate ps --json</c> and the other list commands and
/// for the C ABI's <c>vmstate_processes_json</c>, so they cannot drift apart.
/// </summary>
public static class ListJson
{
    /// <summary>Writes <paramref name="rows"/> as a JSON array of objects.</summary>
    /// <exception cref="InvalidOperationException">A field gives a value of a type a list field cannot have (a bug in the view).</exception>
    public static void WriteArray<T>(Utf8JsonWriter writer, ListView<T> view, IEnumerable<T> rows)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(view);
        ArgumentNullException.ThrowIfNull(rows);
        writer.WriteStartArray();
        foreach (T row in rows)
        {
            writer.WriteStartObject();
            foreach (ListField<T> field in view.Fields)
            {
                object? value = field.ValueOf(row);
                if (value is null && field.OmitWhenNull)
                {
                    continue;
                }

                writer.WritePropertyName(field.Name);
                WriteValue(writer, field, value);
            }

            writer.WriteEndObject();
        }

        writer.WriteEndArray();
    }

    private static void WriteValue<T>(Utf8JsonWriter w, ListField<T> field, object? value)
    {
        switch (value)
        {
            case null:
                w.WriteNullValue();
                break;
            case string s:
                w.WriteStringValue(s);
                break;
            case bool b:
                w.WriteBooleanValue(b);
                break;
            case ulong u when field.Kind == FieldKind.Hex:
                w.WriteStringValue("0x" + u.ToString("x", CultureInfo.InvariantCulture));
                break;
            case int i:
                w.WriteNumberValue(i);
                break;
            case uint u:
                w.WriteNumberValue(u);
                break;
            case long l:
                w.WriteNumberValue(l);
                break;
            case ulong u:
                w.WriteNumberValue(u);
                break;
            default:
                throw new InvalidOperationException($"field '{field.Name}' ({field.Kind}) has a value of type {value.GetType().Name}");
        }
    }
}

using System.Collections.Immutable;
using System.Reflection;
using System.Reflection.Emit;
using System.Reflection.Metadata;
using System.Reflection.Metadata.Ecma335;
using System.Reflection.PortableExecutable;

namespace VmState.Tests.Architecture;

/// <summary>One type of an assembly naming another: <paramref name="From"/> uses <paramref name="To"/>.</summary>
/// <param name="From">The using type, by full name (nested types as <c>Outer+Inner</c>).</param>
/// <param name="FromNamespace">Its namespace (a nested type's is its outermost declaring type's).</param>
/// <param name="To">The type used.</param>
/// <param name="ToNamespace">Its namespace.</param>
/// <param name="How">Where the reference was seen (base type, field, signature, IL, attribute…).</param>
public sealed record TypeReference(string From, string FromNamespace, string To, string ToNamespace, string How);

/// <summary>
/// Every reference from a type defined in an assembly to another type defined in the same assembly, read from the
/// compiled metadata (ECMA-335), not from source text: base types, interfaces, generic constraints, field types,
/// method, property and event signatures, local variables, catch clauses, custom attributes, and every token in
/// every method body (calls, field accesses, newobj, casts, ldtoken…). Compiler-generated closures, iterators and
/// async state machines are nested in the type whose code they hold, so their references count as that type's.
/// </summary>
public static class TypeReferenceGraph
{
    private static readonly Dictionary<short, OperandType> s_operands = typeof(OpCodes)
        .GetFields(BindingFlags.Public | BindingFlags.Static)
        .Select(f => (OpCode)f.GetValue(null)!)
        .ToDictionary(o => o.Value, o => o.OperandType);

    /// <summary>Reads the references of the assembly at <paramref name="path"/>.</summary>
    public static IReadOnlyList<TypeReference> Read(string path)
    {
        using var pe = new PEReader(File.OpenRead(path));
        return new Walker(pe).Walk();
    }

    private sealed class Walker(PEReader pe)
    {
        private readonly MetadataReader _md = pe.GetMetadataReader();
        private readonly SignatureProvider _signatures = new();
        private readonly List<TypeReference> _edges = [];

        public List<TypeReference> Walk()
        {
            foreach (TypeDefinitionHandle h in _md.TypeDefinitions)
            {
                TypeDefinition t = _md.GetTypeDefinition(h);
                Type(h, t.BaseType, "base type");
                foreach (InterfaceImplementationHandle i in t.GetInterfaceImplementations())
                {
                    Type(h, _md.GetInterfaceImplementation(i).Interface, "interface");
                }

                GenericParameters(h, t.GetGenericParameters());
                Attributes(h, t.GetCustomAttributes());
                foreach (FieldDefinitionHandle f in t.GetFields())
                {
                    FieldDefinition field = _md.GetFieldDefinition(f);
                    Add(h, field.DecodeSignature(_signatures, null), "field " + _md.GetString(field.Name));
                    Attributes(h, field.GetCustomAttributes());
                }

                foreach (PropertyDefinitionHandle p in t.GetProperties())
                {
                    PropertyDefinition property = _md.GetPropertyDefinition(p);
                    MethodSignature<ImmutableArray<TypeDefinitionHandle>> s = property.DecodeSignature(_signatures, null);
                    Add(h, s, "property " + _md.GetString(property.Name));
                    Attributes(h, property.GetCustomAttributes());
                }

                foreach (EventDefinitionHandle e in t.GetEvents())
                {
                    EventDefinition ev = _md.GetEventDefinition(e);
                    Type(h, ev.Type, "event " + _md.GetString(ev.Name));
                }

                foreach (MethodDefinitionHandle m in t.GetMethods())
                {
                    Method(h, m);
                }
            }

            return _edges;
        }

        private void Method(TypeDefinitionHandle owner, MethodDefinitionHandle handle)
        {
            MethodDefinition m = _md.GetMethodDefinition(handle);
            string name = _md.GetString(m.Name);
            Add(owner, m.DecodeSignature(_signatures, null), "signature of " + name);
            GenericParameters(owner, m.GetGenericParameters());
            Attributes(owner, m.GetCustomAttributes());
            foreach (ParameterHandle p in m.GetParameters())
            {
                Attributes(owner, _md.GetParameter(p).GetCustomAttributes());
            }

            if (m.RelativeVirtualAddress == 0)
            {
                return;
            }

            MethodBodyBlock body = pe.GetMethodBody(m.RelativeVirtualAddress);
            string where = "code of " + name;
            if (!body.LocalSignature.IsNil)
            {
                StandaloneSignature locals = _md.GetStandaloneSignature(body.LocalSignature);
                foreach (ImmutableArray<TypeDefinitionHandle> l in locals.DecodeLocalSignature(_signatures, null))
                {
                    Add(owner, l, where + " (local)");
                }
            }

            foreach (ExceptionRegion r in body.ExceptionRegions)
            {
                if (r.Kind == ExceptionRegionKind.Catch)
                {
                    Type(owner, r.CatchType, where + " (catch)");
                }
            }

            BlobReader il = body.GetILReader();
            while (il.RemainingBytes > 0)
            {
                short code = il.ReadByte();
                if (code == 0xFE)
                {
                    code = unchecked((short)(0xFE00 | il.ReadByte()));
                }

                switch (s_operands[code])
                {
                    case OperandType.InlineNone:
                        break;
                    case OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar:
                        il.Offset += 1;
                        break;
                    case OperandType.InlineVar:
                        il.Offset += 2;
                        break;
                    case OperandType.InlineI8 or OperandType.InlineR:
                        il.Offset += 8;
                        break;
                    case OperandType.InlineSwitch:
                        int targets = il.ReadInt32();
                        il.Offset += 4 * targets;
                        break;
                    case OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineType or OperandType.InlineTok or OperandType.InlineSig:
                        Token(owner, MetadataTokens.EntityHandle(il.ReadInt32()), where);
                        break;
                    default:
                        // InlineBrTarget, InlineI, ShortInlineR, InlineString: a 4-byte operand that names no type.
                        il.Offset += 4;
                        break;
                }
            }
        }

        private void Token(TypeDefinitionHandle owner, EntityHandle token, string where)
        {
            switch (token.Kind)
            {
                case HandleKind.TypeDefinition or HandleKind.TypeReference or HandleKind.TypeSpecification:
                    Type(owner, token, where);
                    break;
                case HandleKind.MethodDefinition:
                    var method = (MethodDefinitionHandle)token;
                    MethodDefinition m = _md.GetMethodDefinition(method);
                    Add(owner, [m.GetDeclaringType()], where + " (calls " + _md.GetString(m.Name) + ")");
                    Add(owner, m.DecodeSignature(_signatures, null), where + " (calls " + _md.GetString(m.Name) + ")");
                    break;
                case HandleKind.FieldDefinition:
                    FieldDefinition f = _md.GetFieldDefinition((FieldDefinitionHandle)token);
                    Add(owner, [f.GetDeclaringType()], where + " (field " + _md.GetString(f.Name) + ")");
                    Add(owner, f.DecodeSignature(_signatures, null), where + " (field " + _md.GetString(f.Name) + ")");
                    break;
                case HandleKind.MemberReference:
                    MemberReference r = _md.GetMemberReference((MemberReferenceHandle)token);
                    string member = where + " (member " + _md.GetString(r.Name) + ")";
                    Token(owner, r.Parent, member);
                    if (r.GetKind() == MemberReferenceKind.Method)
                    {
                        Add(owner, r.DecodeMethodSignature(_signatures, null), member);
                    }
                    else
                    {
                        Add(owner, r.DecodeFieldSignature(_signatures, null), member);
                    }

                    break;
                case HandleKind.MethodSpecification:
                    MethodSpecification spec = _md.GetMethodSpecification((MethodSpecificationHandle)token);
                    Token(owner, spec.Method, where);
                    foreach (ImmutableArray<TypeDefinitionHandle> a in spec.DecodeSignature(_signatures, null))
                    {
                        Add(owner, a, where + " (type argument)");
                    }

                    break;
                case HandleKind.StandaloneSignature:
                    StandaloneSignature s = _md.GetStandaloneSignature((StandaloneSignatureHandle)token);
                    if (s.GetKind() == StandaloneSignatureKind.Method)
                    {
                        Add(owner, s.DecodeMethodSignature(_signatures, null), where + " (calli)");
                    }

                    break;
            }
        }

        private void GenericParameters(TypeDefinitionHandle owner, GenericParameterHandleCollection parameters)
        {
            foreach (GenericParameterHandle g in parameters)
            {
                foreach (GenericParameterConstraintHandle c in _md.GetGenericParameter(g).GetConstraints())
                {
                    Type(owner, _md.GetGenericParameterConstraint(c).Type, "generic constraint");
                }
            }
        }

        private void Attributes(TypeDefinitionHandle owner, CustomAttributeHandleCollection attributes)
        {
            foreach (CustomAttributeHandle a in attributes)
            {
                Token(owner, _md.GetCustomAttribute(a).Constructor, "attribute");
            }
        }

        private void Type(TypeDefinitionHandle owner, EntityHandle type, string how)
        {
            if (type.IsNil)
            {
                return;
            }

            switch (type.Kind)
            {
                case HandleKind.TypeDefinition:
                    Add(owner, [(TypeDefinitionHandle)type], how);
                    break;
                case HandleKind.TypeSpecification:
                    Add(owner, _md.GetTypeSpecification((TypeSpecificationHandle)type).DecodeSignature(_signatures, null), how);
                    break;
                default:
                    // A TypeReference names a type of another assembly: not an arrow inside this one.
                    break;
            }
        }

        private void Add(TypeDefinitionHandle owner, MethodSignature<ImmutableArray<TypeDefinitionHandle>> signature, string how)
        {
            Add(owner, signature.ReturnType, how);
            foreach (ImmutableArray<TypeDefinitionHandle> p in signature.ParameterTypes)
            {
                Add(owner, p, how);
            }
        }

        private void Add(TypeDefinitionHandle owner, ImmutableArray<TypeDefinitionHandle> targets, string how)
        {
            foreach (TypeDefinitionHandle to in targets)
            {
                if (to != owner)
                {
                    _edges.Add(new TypeReference(Name(owner), Namespace(owner), Name(to), Namespace(to), how));
                }
            }
        }

        private string Namespace(TypeDefinitionHandle h)
        {
            TypeDefinition t = _md.GetTypeDefinition(h);
            while (t.IsNested)
            {
                t = _md.GetTypeDefinition(t.GetDeclaringType());
            }

            return _md.GetString(t.Namespace);
        }

        private string Name(TypeDefinitionHandle h)
        {
            TypeDefinition t = _md.GetTypeDefinition(h);
            string name = _md.GetString(t.Name);
            if (t.IsNested)
            {
                return Name(t.GetDeclaringType()) + "+" + name;
            }

            string ns = _md.GetString(t.Namespace);
            return ns.Length == 0 ? name : ns + "." + name;
        }
    }

    /// <summary>Decodes signatures to the set of this assembly's types they name.</summary>
    private sealed class SignatureProvider : ISignatureTypeProvider<ImmutableArray<TypeDefinitionHandle>, object?>
    {
        public ImmutableArray<TypeDefinitionHandle> GetArrayType(ImmutableArray<TypeDefinitionHandle> elementType, ArrayShape shape) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetByReferenceType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetFunctionPointerType(MethodSignature<ImmutableArray<TypeDefinitionHandle>> signature) =>
            [.. signature.ReturnType, .. signature.ParameterTypes.SelectMany(p => p)];

        public ImmutableArray<TypeDefinitionHandle> GetGenericInstantiation(ImmutableArray<TypeDefinitionHandle> genericType, ImmutableArray<ImmutableArray<TypeDefinitionHandle>> typeArguments) =>
            [.. genericType, .. typeArguments.SelectMany(a => a)];

        public ImmutableArray<TypeDefinitionHandle> GetGenericMethodParameter(object? genericContext, int index) => [];

        public ImmutableArray<TypeDefinitionHandle> GetGenericTypeParameter(object? genericContext, int index) => [];

        public ImmutableArray<TypeDefinitionHandle> GetModifiedType(ImmutableArray<TypeDefinitionHandle> modifier, ImmutableArray<TypeDefinitionHandle> unmodifiedType, bool isRequired) =>
            [.. modifier, .. unmodifiedType];

        public ImmutableArray<TypeDefinitionHandle> GetPinnedType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetPointerType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetPrimitiveType(PrimitiveTypeCode typeCode) => [];

        public ImmutableArray<TypeDefinitionHandle> GetSZArrayType(ImmutableArray<TypeDefinitionHandle> elementType) => elementType;

        public ImmutableArray<TypeDefinitionHandle> GetTypeFromDefinition(MetadataReader reader, TypeDefinitionHandle handle, byte rawTypeKind) => [handle];

        public ImmutableArray<TypeDefinitionHandle> GetTypeFromReference(MetadataReader reader, TypeReferenceHandle handle, byte rawTypeKind) => [];

        public ImmutableArray<TypeDefinitionHandle> GetTypeFromSpecification(MetadataReader reader, object? genericContext, TypeSpecificationHandle handle, byte rawTypeKind) =>
            reader.GetTypeSpecification(handle).DecodeSignature(this, genericContext);
    }
}

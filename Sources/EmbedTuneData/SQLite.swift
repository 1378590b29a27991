import CSQLite
import EmbedTuneFormats
import Foundation

/// A value bound to a statement parameter.
enum SQLValue {
    case null
    case int(Int64)
    case double(Double)
    case text(String)

    static func int(_ v: Int) -> SQLValue { .int(Int64(v)) }
    static func optional(_ s: String?) -> SQLValue { s.map(SQLValue.text) ?? .null }
}

/// One SQLite connection. Errors carry the database path and SQLite's message; every statement
/// is prepared once and reused, strings are bound with their exact UTF-8 length (embedded NULs
/// survive) and copied by SQLite (csqlite_transient).
final class SQLiteDatabase {
    let path: String
    let handle: OpaquePointer

    init(path: String) throws {
        self.path = path
        var h: OpaquePointer?
        let rc = sqlite3_open_v2(path, &h, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nil)
        guard rc == SQLITE_OK, let h else {
            let message = h.map { String(cString: sqlite3_errmsg($0)) } ?? String(cString: sqlite3_errstr(rc))
            if let h { sqlite3_close_v2(h) }
            throw FormatError(file: path, "cannot open: \(message)")
        }
        handle = h
        sqlite3_busy_timeout(handle, 10_000)
    }

    deinit { sqlite3_close_v2(handle) }

    var lastMessage: String { String(cString: sqlite3_errmsg(handle)) }

    func failure(_ what: String) -> FormatError {
        let code = sqlite3_extended_errcode(handle)
        if code & 0xFF == SQLITE_NOTADB {
            return FormatError(file: path, "is not an EmbedTune dataset store (not an SQLite database)")
        }
        return FormatError(file: path, "SQLite: \(lastMessage) (\(what))")
    }

    /// Runs one or more statements that return no rows the caller needs.
    func execute(_ sql: String) throws {
        var message: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(handle, sql, nil, nil, &message) == SQLITE_OK else {
            let text = message.map { String(cString: $0) } ?? lastMessage
            sqlite3_free(message)
            if sqlite3_extended_errcode(handle) & 0xFF == SQLITE_NOTADB { throw failure(sql) }
            throw FormatError(file: path, "SQLite: \(text) (\(sql.prefix(60)))")
        }
    }

    func prepare(_ sql: String) throws -> Statement {
        var s: OpaquePointer?
        guard sqlite3_prepare_v3(handle, sql, -1, UInt32(SQLITE_PREPARE_PERSISTENT), &s, nil) == SQLITE_OK, let s else {
            throw failure("preparing \(sql.prefix(60))")
        }
        return Statement(db: self, handle: s, sql: sql)
    }

    /// An integer from a one-row query (PRAGMA user_version, COUNT(*)).
    func scalar(_ sql: String, _ values: SQLValue...) throws -> Int64 {
        let s = try prepare(sql)
        try s.bind(values)
        return try s.step() ? s.int(0) : 0
    }

    /// BEGIN IMMEDIATE … COMMIT, or ROLLBACK when the body (or the commit) throws: the database is
    /// exactly as before a failed call.
    func transaction<T>(_ body: () throws -> T) throws -> T {
        try execute("BEGIN IMMEDIATE")
        do {
            let result = try body()
            try execute("COMMIT")
            return result
        } catch {
            if sqlite3_get_autocommit(handle) == 0 { sqlite3_exec(handle, "ROLLBACK", nil, nil, nil) }
            throw error
        }
    }

    var changes: Int { Int(sqlite3_changes(handle)) }
    var lastInsertRowID: Int64 { sqlite3_last_insert_rowid(handle) }
}

/// A prepared statement: bind, step, read columns, reset.
final class Statement {
    let db: SQLiteDatabase
    let handle: OpaquePointer
    let sql: String

    init(db: SQLiteDatabase, handle: OpaquePointer, sql: String) {
        self.db = db
        self.handle = handle
        self.sql = sql
    }

    deinit { sqlite3_finalize(handle) }

    func bind(_ values: [SQLValue]) throws {
        sqlite3_reset(handle)
        sqlite3_clear_bindings(handle)
        for (k, value) in values.enumerated() {
            let i = Int32(k + 1)
            let rc: Int32
            switch value {
            case .null: rc = sqlite3_bind_null(handle, i)
            case .int(let v): rc = sqlite3_bind_int64(handle, i, v)
            case .double(let v): rc = sqlite3_bind_double(handle, i, v)
            case .text(var s):
                rc = s.withUTF8 { buf in
                    // An empty buffer may have no base address; "" keeps it a text value, not NULL.
                    guard let base = buf.baseAddress, buf.count > 0 else { return sqlite3_bind_text(handle, i, "", 0, csqlite_transient()) }
                    return base.withMemoryRebound(to: CChar.self, capacity: buf.count) {
                        sqlite3_bind_text(handle, i, $0, Int32(buf.count), csqlite_transient())
                    }
                }
            }
            guard rc == SQLITE_OK else { throw db.failure("binding parameter \(i) of \(sql.prefix(60))") }
        }
    }

    /// True while a row is available; false when done.
    func step() throws -> Bool {
        switch sqlite3_step(handle) {
        case SQLITE_ROW: return true
        case SQLITE_DONE: return false
        default: throw db.failure(String(sql.prefix(60)))
        }
    }

    /// Binds and runs a statement that returns no rows.
    func run(_ values: SQLValue...) throws {
        try bind(values)
        while try step() {}
        sqlite3_reset(handle)
    }

    /// Binds, then calls `row` for every result row.
    func forEach(_ values: SQLValue..., row: (Statement) throws -> Void) throws {
        try bind(values)
        defer { sqlite3_reset(handle) }
        while try step() { try row(self) }
    }

    func int(_ column: Int32) -> Int64 { sqlite3_column_int64(handle, column) }
    func double(_ column: Int32) -> Double { sqlite3_column_double(handle, column) }
    func isNull(_ column: Int32) -> Bool { sqlite3_column_type(handle, column) == SQLITE_NULL }

    /// The column's text with its exact byte length; nil for NULL.
    func text(_ column: Int32) -> String? {
        guard let p = sqlite3_column_text(handle, column) else { return nil }
        let n = Int(sqlite3_column_bytes(handle, column))
        return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
    }

    func string(_ column: Int32) -> String { text(column) ?? "" }
}

public enum SQLiteInfo {
    public static var version: String { String(cString: sqlite3_libversion()) }
}
